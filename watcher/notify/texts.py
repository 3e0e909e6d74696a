"""Every word the email reports use, in Spanish (the default) and English, kept in one place.

Keys are looked up with :func:`text`; a missing key or language is a programming error and
fails loudly in the tests rather than sending a half-translated message.
"""

from __future__ import annotations

LANGUAGES = ("es", "en")

TEXTS: dict[str, dict[str, str]] = {
    "es": {
        # subject: [SIIP Backup] <OK|WARNING|FAILED> <name> <local time>
        "subject": "[SIIP Backup] {status} {name} {when}",
        "subject_recovery": "[SIIP Backup] {status} {name} {when} (recuperada tras fallos)",
        "subject_test": "[SIIP Backup] TEST {name} {when}",
        "subject_alert": "[SIIP Backup] ALERTA posible pérdida de datos {name} {when}",
        "alert_database_empty": "una base de datos quedó vacía",
        "alert_database_shrunk": "una base de datos perdió más de la mitad de su contenido",
        "alert_tree_changed": "muchos archivos del proyecto desaparecieron o cambiaron a la vez",
        "alert_incompressible": "archivos de texto se volvieron ilegibles, como quedan al ser "
                                "cifrados por un ransomware",
        "lead_alert": "ATENCIÓN: los datos cambiaron como cambian tras un accidente o un ataque "
                      "(ransomware): {reasons}. No se borrará ninguna copia antigua hasta que "
                      "el administrador revise los datos y lo confirme con "
                      "`siip-watcher ack`.",
        # first paragraph, in plain words
        "lead_ok": 'La copia de seguridad de "{name}" terminó correctamente.',
        "lead_warning": 'La copia de seguridad de "{name}" se guardó, pero hay algo que revisar.',
        "lead_failed": 'La copia de seguridad de "{name}" FALLÓ: no se creó ninguna copia nueva.',
        "lead_recovery": 'Las copias de seguridad de "{name}" vuelven a funcionar: esta es la '
                         "primera copia correcta después de uno o más fallos.",
        "lead_start_failed": 'El servicio de copias de seguridad de "{name}" NO pudo arrancar: '
                             "no se harán copias hasta que se corrija.",
        # what a failure was about, in plain words (watcher.backup.report.CAUSES); the technical
        # line follows under "Errores"
        "cause_source_missing": "no se encuentra la carpeta del proyecto que hay que copiar.",
        "cause_database_missing": "no se encuentra la base de datos que hay que copiar.",
        "cause_database_damaged": "la base de datos está dañada; no se guardó una copia "
                                  "dañada. Avise al administrador cuanto antes.",
        "cause_database_unreadable": "no se pudo leer la base de datos.",
        "cause_disk_full": "no queda espacio en el disco donde se guardan las copias.",
        "cause_write_failed": "no se pudo escribir el archivo de copia en el disco.",
        "cause_stopped": "el servicio se detuvo antes de terminar la copia; se repetirá al "
                         "volver a arrancar.",
        "cause_backup_dir": "no se puede usar la carpeta donde se guardan las copias.",
        "cause_catalog": "no se puede leer el registro interno de las copias (el catálogo); "
                         "las copias ya guardadas no se han tocado.",
        "cause_busy": "otra copia de seguridad seguía en marcha y esta no pudo empezar.",
        "cause_unexpected": "siip-watcher se detuvo por un error inesperado antes de terminar; "
                            "los detalles técnicos están abajo y en el registro del servicio.",
        "cause_watch": "el servicio no puede vigilar los cambios en la carpeta del proyecto.",
        "cause_schedule_disabled": "el servicio está desactivado en la configuración "
                                   "(schedule.enabled = false), así que no hace copias.",
        "what_failed": "Qué falló: {message}",
        "what_to_check": "Qué revisar: {message}",
        "what_to_do": "Qué hacer: {hint}",
        "failed_unknown": "la ejecución terminó sin crear el archivo de copia "
                          "(no se registró la causa; revise el registro del servicio)",
        # summary
        "section_summary": "Resumen",
        "status": "Estado",
        "status_ok": "Correcta",
        "status_warning": "Con avisos",
        "status_failed": "FALLIDA",
        "trigger": "Motivo",
        "trigger_start": "arranque del servicio",
        "trigger_interval": "programada (intervalo)",
        "trigger_change": "cambios detectados en los datos",
        "trigger_manual": "manual",
        "started": "Inicio",
        "duration": "Duración",
        "host": "Servidor",
        # the archive
        "section_archive": "Archivo de copia",
        "archive": "Archivo",
        "size": "Tamaño",
        "ratio": "Compresión",
        "ratio_value": "{ratio} veces más pequeño ({original} sin comprimir)",
        "sha256": "SHA-256",
        "files": "Archivos copiados",
        "files_value": "{files} archivos, {bytes} en total",
        "no_archive": "No se creó ningún archivo de copia.",
        # databases
        "section_databases": "Bases de datos",
        "db_ok": "íntegra ({pragma}: ok)",
        "db_bad": "DAÑADA ({pragma}: {check})",
        "db_detail": "{size}, {pages} páginas",
        # destinations
        "section_destinations": "Destinos",
        "dest_uploaded": "subida",
        "dest_pending": "pendiente (se reintentará automáticamente)",
        "dest_failed": "falló",
        "dest_skipped": "omitido en esta ejecución",
        "link": "enlace",
        # problems
        "section_errors": "Errores",
        "section_warnings": "Avisos",
        # the backup dir
        "section_storage": "Almacenamiento y calendario",
        "free": "Espacio libre en {dir}",
        "next_run": "Próxima copia programada",
        "next_run_none": "ninguna programada (ejecución manual o servicio detenido)",
        "kept": "Copias conservadas tras la limpieza",
        "kept_value": "{count} ({ids})",
        "pruned": "Copias borradas por la limpieza",
        "unknown": "desconocido",
        # units
        "seconds": "{n} s",
        "minutes": "{m} min {s} s",
        "hours": "{h} h {m} min",
        # footer
        "footer": "Mensaje enviado por siip-watcher {version} desde {host}.",
        # the test message
        "test_lead": "Este es un mensaje de prueba de siip-watcher para \"{name}\".",
        "test_body": "Si lo está leyendo, los informes por correo funcionan: servidor {server}, "
                     "seguridad {security}.",
    },
    "en": {
        "subject": "[SIIP Backup] {status} {name} {when}",
        "subject_recovery": "[SIIP Backup] {status} {name} {when} (recovered after failures)",
        "subject_test": "[SIIP Backup] TEST {name} {when}",
        "subject_alert": "[SIIP Backup] ALERT possible data loss {name} {when}",
        "alert_database_empty": "a database is empty",
        "alert_database_shrunk": "a database lost more than half of its content",
        "alert_tree_changed": "many of the project's files disappeared or changed at once",
        "alert_incompressible": "text files turned unreadable, as ransomware encryption leaves "
                                "them",
        "lead_alert": "ATTENTION: the data changed the way it does after an accident or an "
                      "attack (ransomware): {reasons}. No old backup will be deleted until the "
                      "administrator checks the data and confirms with `siip-watcher ack`.",
        "lead_ok": 'The backup of "{name}" finished successfully.',
        "lead_warning": 'The backup of "{name}" was stored, but something needs a look.',
        "lead_failed": 'The backup of "{name}" FAILED: no new backup was made.',
        "lead_recovery": 'Backups of "{name}" are working again: this is the first good backup '
                         "after one or more failures.",
        "lead_start_failed": 'The backup service for "{name}" could NOT start: no backups are '
                             "made until this is fixed.",
        # what a failure was about, in plain words (watcher.backup.report.CAUSES); the technical
        # line follows under "Errors"
        "cause_source_missing": "the project folder to back up cannot be found.",
        "cause_database_missing": "the database to back up cannot be found.",
        "cause_database_damaged": "the database is damaged; no damaged copy was stored. Tell "
                                  "the administrator at once.",
        "cause_database_unreadable": "the database could not be read.",
        "cause_disk_full": "the disk that holds the backups is full.",
        "cause_write_failed": "the backup file could not be written to disk.",
        "cause_stopped": "the service stopped before the backup was complete; it runs again "
                         "at the next start.",
        "cause_backup_dir": "the folder that holds the backups cannot be used.",
        "cause_catalog": "the backup program's own record of its backups (the catalog) cannot "
                         "be read; the backups already stored are untouched.",
        "cause_busy": "another backup was still running, so this one could not start.",
        "cause_unexpected": "siip-watcher stopped on an unexpected error before it finished; "
                            "the technical details are below and in the service log.",
        "cause_watch": "the service cannot watch the project folder for changes.",
        "cause_schedule_disabled": "the service is switched off in the configuration "
                                   "(schedule.enabled = false), so it makes no backups.",
        "what_failed": "What failed: {message}",
        "what_to_check": "What to check: {message}",
        "what_to_do": "What to do: {hint}",
        "failed_unknown": "the run ended without creating the archive "
                          "(no cause was recorded; check the service log)",
        "section_summary": "Summary",
        "status": "Status",
        "status_ok": "OK",
        "status_warning": "With warnings",
        "status_failed": "FAILED",
        "trigger": "Trigger",
        "trigger_start": "service start",
        "trigger_interval": "scheduled (interval)",
        "trigger_change": "changes detected in the data",
        "trigger_manual": "manual",
        "started": "Started",
        "duration": "Duration",
        "host": "Server",
        "section_archive": "Backup archive",
        "archive": "Archive",
        "size": "Size",
        "ratio": "Compression",
        "ratio_value": "{ratio} times smaller ({original} uncompressed)",
        "sha256": "SHA-256",
        "files": "Files backed up",
        "files_value": "{files} files, {bytes} in total",
        "no_archive": "No backup archive was created.",
        "section_databases": "Databases",
        "db_ok": "intact ({pragma}: ok)",
        "db_bad": "DAMAGED ({pragma}: {check})",
        "db_detail": "{size}, {pages} pages",
        "section_destinations": "Destinations",
        "dest_uploaded": "uploaded",
        "dest_pending": "pending (will be retried automatically)",
        "dest_failed": "failed",
        "dest_skipped": "skipped in this run",
        "link": "link",
        "section_errors": "Errors",
        "section_warnings": "Warnings",
        "section_storage": "Storage and schedule",
        "free": "Free space at {dir}",
        "next_run": "Next scheduled backup",
        "next_run_none": "none scheduled (manual run or service stopped)",
        "kept": "Backups kept after pruning",
        "kept_value": "{count} ({ids})",
        "pruned": "Backups deleted by pruning",
        "unknown": "unknown",
        "seconds": "{n} s",
        "minutes": "{m} min {s} s",
        "hours": "{h} h {m} min",
        "footer": "Sent by siip-watcher {version} from {host}.",
        "test_lead": 'This is a test message from siip-watcher for "{name}".',
        "test_body": "If you are reading it, email reports work: server {server}, "
                     "security {security}.",
    },
}

#: the status word in the subject stays English in both languages, so mail filters work
SUBJECT_STATUS = {"ok": "OK", "warning": "WARNING", "failed": "FAILED"}


def text(language: str, key: str, **values: object) -> str:
    """The text ``key`` in ``language``, with ``{placeholders}`` filled from ``values``."""
    return TEXTS[language][key].format(**values)
