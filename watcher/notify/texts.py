"""Every word the email reports use, in Spanish (the default) and English, kept in one place.

Keys are looked up with :func:`text`; a missing key or language is a programming error and
fails loudly in the tests rather than sending a half-translated message.
"""

from __future__ import annotations

LANGUAGES = ("es", "en")

# hints several problems share, one wording each
_ES_DATA_LOSS_HINT = ("revise ahora la aplicación y sus datos; cuando todo esté bien, ejecute "
                      "`siip-watcher ack` para que las copias antiguas vuelvan a borrarse "
                      "según la retención.")
_EN_DATA_LOSS_HINT = ("look at the application and its data now; when all is well, run "
                      "`siip-watcher ack` so old snapshots are pruned again.")
_ES_READ_HINT = ("dé al usuario del servicio permiso de lectura sobre él, o exclúyalo en "
                 "source.exclude.")
_EN_READ_HINT = "give the service user read access to it, or exclude it in source.exclude."
_ES_MIXED_HINT = ("la próxima copia lo tendrá completo; no hay que hacer nada salvo que se "
                  "repita.")
_EN_MIXED_HINT = "the next snapshot will hold it whole; nothing to do unless it keeps happening."


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
                                   "(`schedule.enabled = false`), así que no hace copias.",
        "cause_web_listen": "la página de monitoreo no puede usar la dirección configurada "
                            "(web.listen), así que el servicio no arrancó.",
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
        "kind": "Tipo",
        "kind_full": "copia completa (se restaura sola)",
        "kind_delta": "copia diferencial: solo los cambios desde la copia completa {base}, "
                      "que se necesita para restaurarla",
        "stored_value": "{stored} guardados de {original} (el resto está en {base})",
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
        "db_bad": "DAÑADA ({pragma})",
        "db_detail": "{size}, {pages} páginas",
        "db_pages": "{changed} páginas cambiadas desde {base}",
        "db_found": "encontrada automáticamente en la carpeta del proyecto (no figura en "
                    "source.databases) y copiada igual que las configuradas",
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
        # what to do about a cause when the problem brings no words of its own
        "cause_source_missing_hint": "corrija source.root en la configuración.",
        "cause_database_missing_hint": "corrija source.databases en la configuración (las "
                                       "rutas son relativas a source.root).",
        "cause_database_damaged_hint": "restaure la base de datos desde una copia anterior "
                                       "(`siip-watcher restore`) o repárela con "
                                       "`sqlite3 .recover`.",
        "cause_database_unreadable_hint": "compruebe que el usuario del servicio puede leer la "
                                          "base de datos y su carpeta y que ningún programa la "
                                          "mantiene bloqueada; luego ejecute "
                                          "`siip-watcher once`.",
        "cause_disk_full_hint": "libere espacio en ese disco o reduzca los ajustes "
                                "retention.keep_*; luego ejecute `siip-watcher once`.",
        "cause_write_failed_hint": "revise la carpeta de copias (local.dir) y su disco; luego "
                                   "ejecute `siip-watcher once`.",
        "cause_stopped_hint": "nada que hacer: se repetirá al volver a arrancar.",
        "cause_backup_dir_hint": "compruebe que la carpeta existe y que el usuario del servicio "
                                 "es su dueño y puede escribir en ella, o cambie local.dir.",
        "cause_catalog_hint": "compruebe que el usuario del servicio puede leer y escribir el "
                              "catálogo y que ningún otro programa lo tiene abierto.",
        "cause_busy_hint": "si de verdad no hay otra copia en marcha, busque un proceso de "
                           "siip-watcher atascado (`siip-watcher status`) y termínelo.",
        "cause_unexpected_hint": "vea los detalles en el registro del servicio y luego ejecute "
                                 "`siip-watcher once`; si vuelve a ocurrir, infórmelo.",
        "cause_watch_hint": "compruebe que las carpetas de source.root y source.databases "
                            "existen y que el usuario del servicio puede leerlas.",
        "cause_schedule_disabled_hint": "póngalo a `true` (o detenga y desactive el servicio "
                                        "y ejecute `siip-watcher once` a mano).",
        "cause_web_listen_hint": "elija otra dirección en web.listen o detenga el programa que "
                                 "la usa (o ponga web.enabled = false).",
        # each problem (watcher.backup.report.PROBLEM_KEYS) and what to do about it
        "problem_data_loss_database_empty": "alerta de pérdida de datos: la base de datos "
                                            "{path} está vacía.",
        "problem_data_loss_database_empty_hint": _ES_DATA_LOSS_HINT,
        "problem_data_loss_database_emptied": "alerta de pérdida de datos: la base de datos "
                                              "{path} está vacía (tenía {before} páginas).",
        "problem_data_loss_database_emptied_hint": _ES_DATA_LOSS_HINT,
        "problem_data_loss_database_shrunk": "alerta de pérdida de datos: la base de datos "
                                             "{path} perdió más de la mitad de sus páginas "
                                             "({before} → {pages}).",
        "problem_data_loss_database_shrunk_hint": _ES_DATA_LOSS_HINT,
        "problem_data_loss_tree_changed": "alerta de pérdida de datos: desde la copia anterior "
                                          "desapareció ({gone}) o cambió ({changed}) el "
                                          "{share} % de los archivos del proyecto (el nivel de "
                                          "alerta es el {level} %).",
        "problem_data_loss_tree_changed_hint": _ES_DATA_LOSS_HINT,
        "problem_data_loss_incompressible": "alerta de pérdida de datos: {incompressible} de "
                                            "{sampled} archivos de texto modificados contienen "
                                            "ahora bytes aleatorios, como los que deja un "
                                            "ransomware al cifrarlos.",
        "problem_data_loss_incompressible_hint": _ES_DATA_LOSS_HINT,
        "problem_after_snapshot": "falló un paso posterior a la copia (subidas, limpieza o "
                                  "lista de copias conservadas).",
        "problem_after_snapshot_hint": "la copia en sí está guardada; vea el detalle técnico y "
                                       "el registro del servicio.",
        "problem_catalog_unusable": "no se puede usar el catálogo {path}.",
        "problem_catalog_unusable_hint": "compruebe que el usuario del servicio puede leerlo y "
                                         "escribirlo y que ningún otro programa lo tiene "
                                         "abierto.",
        "problem_catalog_damaged": "el catálogo {path} está dañado.",
        "problem_catalog_damaged_hint": "apártelo (renómbrelo a {name}.damaged, por ejemplo); "
                                        "la próxima ejecución lo reconstruye a partir de los "
                                        "archivos de copia y vuelve a poner en cola sus "
                                        "subidas.",
        "problem_stopped": "la ejecución se detuvo antes de completar la copia; no se guardó "
                           "nada a medias.",
        "problem_stopped_hint": "se repetirá en el próximo arranque.",
        "problem_read_failed": "no se pudo leer {path}; no está en esta copia.",
        "problem_read_failed_hint": _ES_READ_HINT,
        "problem_not_a_file": "se omitió {path}: no es un archivo normal, una carpeta ni un "
                              "enlace.",
        "problem_not_a_file_hint": "exclúyalo en source.exclude para que este aviso no se "
                                   "repita.",
        "problem_vanished": "{path} desapareció mientras se hacía la copia; no está en ella.",
        "problem_vanished_hint": "nada que hacer si la aplicación lo borró.",
        "problem_found_database_as_files": "{path} es una base de datos SQLite que no figura "
                                           "en source.databases y no se pudo copiar de forma "
                                           "coherente; esta copia la guarda tal como está en "
                                           "el disco, que puede no ser coherente.",
        "problem_found_database_as_files_hint": "repárela, o exclúyala en source.exclude si no "
                                                "guarda nada que conservar.",
        "problem_file_changed": "{path} cambió mientras se leía; esta copia puede tener una "
                                "mezcla de su contenido antiguo y nuevo.",
        "problem_file_changed_hint": _ES_MIXED_HINT,
        "problem_file_shrank": "{path} se acortó mientras se leía: los últimos {bytes} bytes de "
                               "su copia son ceros.",
        "problem_file_shrank_hint": _ES_MIXED_HINT,
        "problem_file_replaced": "{path} fue sustituido por otra cosa después de listar los "
                                 "archivos; no está en esta copia y no se leyó nada en su "
                                 "lugar.",
        "problem_file_replaced_hint": "nada que hacer si la aplicación lo reemplazó (la próxima "
                                      "copia lo tendrá tal como esté entonces); si nadie "
                                      "debería hacerlo, averigüe quién cambia archivos dentro "
                                      "de source.root.",
        "problem_catalog_rebuilt": "el catálogo estaba dañado; se apartó como {file} y se "
                                   "reconstruyó a partir de los archivos de copia.",
        "problem_catalog_rebuilt_hint": "nada que hacer: las copias que no constan en un "
                                        "destino vuelven a la cola; borre el archivo apartado "
                                        "cuando ya no lo necesite.",
        "problem_prune_held": "no se borró ninguna copia antigua: hay una alerta de posible "
                              "pérdida de datos desde {since}.",
        "problem_prune_held_hint": "revise los datos de la aplicación y luego ejecute "
                                   "`siip-watcher ack` para que la limpieza se reanude.",
        "problem_future_snapshot": "{sid} tiene una fecha de más de un día por delante del "
                                   "reloj de esta máquina ({now}); se conserva, pero ya no "
                                   "cuenta como la copia más reciente.",
        "problem_future_snapshot_hint": "revise el reloj; si la fecha de esa copia es errónea, "
                                        "verifíquela y bórrela a mano.",
        "problem_prune_list_failed": "no se pudo ver qué copias hay en {dest} para borrar allí "
                                     "las antiguas.",
        "problem_prune_list_failed_hint": "se borrarán en la próxima ejecución que llegue a "
                                          "{dest}.",
        "problem_prune_delete_failed": "no se pudo borrar {sid} de {dest}.",
        "problem_prune_delete_failed_hint": "se borrará en la próxima ejecución.",
        "problem_trashed_instead": "{dest} no deja a esta cuenta borrar copias definitivamente: "
                                   "las copias antiguas se movieron a su papelera.",
        "problem_trashed_instead_hint": "dé a la cuenta el permiso de borrar en {dest} (el "
                                        "detalle técnico indica cuál) para que no ocupen "
                                        "espacio mientras esperan en la papelera.",
        "problem_local_not_encrypted": "{file} sigue sin cifrar en la carpeta de copias, "
                                       "aunque [encryption] local = true.",
        "problem_local_not_encrypted_hint": "se intenta de nuevo en la próxima ejecución; si "
                                            "se repite, vea el detalle técnico (¿disco lleno?).",
        "problem_untranslated": "otro problema; el detalle técnico lo describe.",
        "detail": "Detalle técnico (en inglés): {detail}",
        # what to do about a copy (watcher.backup.report.DESTINATION_KEYS)
        "dest_hint_unavailable": "no se pudo preparar {dest}; se intentará de nuevo en la "
                                 "próxima ejecución. Revise su configuración con el detalle "
                                 "técnico.",
        "dest_hint_no_upload": "subida omitida (--no-upload); la copia sigue en cola.",
        "dest_hint_stopping": "no se intentó porque el servicio se estaba deteniendo; la copia "
                              "sigue en cola.",
        "dest_hint_failed_earlier": "no se intentó porque {dest} ya falló antes en esta pasada; "
                                    "la copia sigue en cola.",
        "dest_hint_archive_missing": "falta el archivo local de {sid}, así que no se puede "
                                     "copiar a {dest}; ejecute `siip-watcher verify --all` "
                                     "para ver qué hay en la carpeta de copias.",
        "dest_hint_retry_at": "la copia local se conserva y la subida sigue en cola; próximo "
                              "intento: {when} (o ejecute `siip-watcher once`).",
        "dest_hint_fix_cause": "corrija la causa (vea el detalle técnico) y luego ejecute "
                               "`siip-watcher once`; la copia local se conserva (próximo "
                               "intento automático: {when}).",
        "dest_hint_waits_for_base": "no se intentó porque su respaldo completo base, {base}, "
                                    "aún no está en {dest}; se envía después de él y la copia "
                                    "sigue en cola.",
        "dest_hint_base_gone": "su respaldo completo base, {base}, ya no está en la carpeta de "
                               "copias y nunca llegó a {dest}, así que {sid} no se podría "
                               "restaurar desde allí; la próxima ejecución hace un respaldo "
                               "completo.",
        "dest_older": "{dest} (copia anterior, {sid})",
        "security_starttls": "STARTTLS",
        "security_ssl": "TLS desde el primer byte (SSL)",
        "security_none": "ninguna (sin TLS)",
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
                                   "(`schedule.enabled = false`), so it makes no backups.",
        "cause_web_listen": "the monitor page cannot use the configured address (web.listen), "
                            "so the service did not start.",
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
        "kind": "Kind",
        "kind_full": "full (restores on its own)",
        "kind_delta": "delta: only the changes since the full {base}, which its restore "
                      "needs",
        "stored_value": "{stored} stored out of {original} (the rest is in {base})",
        "size": "Size",
        "ratio": "Compression",
        "ratio_value": "{ratio} times smaller ({original} uncompressed)",
        "sha256": "SHA-256",
        "files": "Files backed up",
        "files_value": "{files} files, {bytes} in total",
        "no_archive": "No backup archive was created.",
        "section_databases": "Databases",
        "db_ok": "intact ({pragma}: ok)",
        "db_bad": "DAMAGED ({pragma})",
        "db_detail": "{size}, {pages} pages",
        "db_pages": "{changed} pages changed since {base}",
        "db_found": "found automatically in the project folder (not in source.databases) and "
                    "copied like the configured ones",
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
        "cause_source_missing_hint": "fix source.root in the configuration.",
        "cause_database_missing_hint": "fix source.databases in the configuration (paths are "
                                       "relative to source.root).",
        "cause_database_damaged_hint": "restore the database from a previous snapshot "
                                       "(`siip-watcher restore`) or repair it with "
                                       "`sqlite3 .recover`.",
        "cause_database_unreadable_hint": "check that the service user can read the database "
                                          "and its folder and that no program keeps it "
                                          "locked; then run `siip-watcher once`.",
        "cause_disk_full_hint": "free some space on that disk or lower the retention.keep_* "
                                "settings; then run `siip-watcher once`.",
        "cause_write_failed_hint": "check the backup folder (local.dir) and its disk; then run "
                                   "`siip-watcher once`.",
        "cause_stopped_hint": "nothing to do: it runs again at the next start.",
        "cause_backup_dir_hint": "check that the folder exists and that the service user owns "
                                 "it and may write it, or change local.dir.",
        "cause_catalog_hint": "check that the service user may read and write the catalog and "
                              "that no other program holds it open.",
        "cause_busy_hint": "if no backup is really running, look for a stuck siip-watcher "
                           "process (`siip-watcher status`) and end it.",
        "cause_unexpected_hint": "see the service log for the details, then run "
                                 "`siip-watcher once`; report it if it happens again.",
        "cause_watch_hint": "check that the folders of source.root and source.databases exist "
                            "and that the service user may read them.",
        "cause_schedule_disabled_hint": "set it to `true` (or stop and disable the service and "
                                        "run `siip-watcher once` by hand).",
        "cause_web_listen_hint": "choose another address in web.listen or stop the program that "
                                 "uses it (or set web.enabled = false).",
        "problem_data_loss_database_empty": "data-loss alert: the database {path} is empty.",
        "problem_data_loss_database_empty_hint": _EN_DATA_LOSS_HINT,
        "problem_data_loss_database_emptied": "data-loss alert: the database {path} is empty "
                                              "(it had {before} pages).",
        "problem_data_loss_database_emptied_hint": _EN_DATA_LOSS_HINT,
        "problem_data_loss_database_shrunk": "data-loss alert: the database {path} lost more "
                                             "than half of its pages ({before} → {pages}).",
        "problem_data_loss_database_shrunk_hint": _EN_DATA_LOSS_HINT,
        "problem_data_loss_tree_changed": "data-loss alert: {share}% of the project's files "
                                          "disappeared ({gone}) or changed ({changed}) since "
                                          "the previous snapshot (the alert level is "
                                          "{level}%).",
        "problem_data_loss_tree_changed_hint": _EN_DATA_LOSS_HINT,
        "problem_data_loss_incompressible": "data-loss alert: {incompressible} of {sampled} "
                                            "changed text files now hold random-looking "
                                            "bytes, as ransomware leaves the files it "
                                            "encrypts.",
        "problem_data_loss_incompressible_hint": _EN_DATA_LOSS_HINT,
        "problem_after_snapshot": "a step after the snapshot failed (uploads, pruning or the "
                                  "list of kept backups).",
        "problem_after_snapshot_hint": "the snapshot itself is stored; see the technical "
                                       "detail and the service log.",
        "problem_catalog_unusable": "the catalog {path} cannot be used.",
        "problem_catalog_unusable_hint": "check that the service user may read and write it "
                                         "and that no other program holds it open.",
        "problem_catalog_damaged": "the catalog {path} is damaged.",
        "problem_catalog_damaged_hint": "move it aside (rename it to {name}.damaged, say); the "
                                        "next run rebuilds it from the archives and queues "
                                        "their uploads again.",
        "problem_stopped": "the run was stopped before the snapshot was complete; nothing "
                           "partial was kept.",
        "problem_stopped_hint": "it runs again at the next start.",
        "problem_read_failed": "could not read {path}; it is not in this snapshot.",
        "problem_read_failed_hint": _EN_READ_HINT,
        "problem_not_a_file": "skipped {path}: not a regular file, folder or link.",
        "problem_not_a_file_hint": "exclude it in source.exclude to silence this warning.",
        "problem_vanished": "{path} vanished while the snapshot was taken; it is not in it.",
        "problem_vanished_hint": "nothing to do if the app deleted it.",
        "problem_found_database_as_files": "{path} is a SQLite database not listed in "
                                           "source.databases that could not be copied "
                                           "consistently; this snapshot holds it as it lies on "
                                           "disk, which may not be consistent.",
        "problem_found_database_as_files_hint": "repair it, or exclude it in source.exclude if "
                                                "it holds nothing to keep.",
        "problem_file_changed": "{path} changed while being read; this snapshot may hold a mix "
                                "of old and new content for it.",
        "problem_file_changed_hint": _EN_MIXED_HINT,
        "problem_file_shrank": "{path} shrank while being read: the last {bytes} bytes of its "
                               "copy are zeros.",
        "problem_file_shrank_hint": _EN_MIXED_HINT,
        "problem_file_replaced": "{path} was replaced by something else after the files were "
                                 "listed; it is not in this snapshot, and nothing was read in "
                                 "its place.",
        "problem_file_replaced_hint": "nothing to do if the app replaced it (the next snapshot "
                                      "holds it as it is then); if nobody should, find out who "
                                      "changes files under source.root.",
        "problem_catalog_rebuilt": "the catalog was damaged; it was moved aside to {file} and "
                                   "rebuilt from the archives.",
        "problem_catalog_rebuilt_hint": "nothing to do: copies not known to be at a "
                                        "destination are queued again; delete the moved file "
                                        "when you no longer need it.",
        "problem_prune_held": "no old backup was deleted: a data-loss alert holds since "
                              "{since}.",
        "problem_prune_held_hint": "check the application's data, then run `siip-watcher ack` "
                                   "so pruning resumes.",
        "problem_future_snapshot": "{sid} is dated more than a day ahead of this machine's "
                                   "clock ({now}); it is kept but no longer counts as the "
                                   "newest backup.",
        "problem_future_snapshot_hint": "check the clock; if that backup's date is wrong, "
                                        "verify it and delete it by hand.",
        "problem_prune_list_failed": "could not see which backups {dest} holds, so none of the "
                                     "old ones were deleted there.",
        "problem_prune_list_failed_hint": "they are deleted on the next run that reaches "
                                          "{dest}.",
        "problem_prune_delete_failed": "could not delete {sid} from {dest}.",
        "problem_prune_delete_failed_hint": "it is deleted on the next run.",
        "problem_trashed_instead": "{dest} does not let this account delete backups for good: "
                                   "the old ones were moved to its trash instead.",
        "problem_trashed_instead_hint": "give the account the right to delete at {dest} (the "
                                        "technical detail says which) so they do not take up "
                                        "space while they wait in the trash.",
        "problem_local_not_encrypted": "{file} is still unencrypted in the backup folder, "
                                       "although [encryption] local = true.",
        "problem_local_not_encrypted_hint": "it is tried again at the next run; if it "
                                            "repeats, see the technical detail (a full disk?).",
        "problem_untranslated": "another problem; the technical detail describes it.",
        "detail": "Technical detail: {detail}",
        "dest_hint_unavailable": "{dest} could not be prepared; it is tried again on the next "
                                 "run. Check its settings against the technical detail.",
        "dest_hint_no_upload": "upload skipped (--no-upload); the copy stays queued.",
        "dest_hint_stopping": "not tried because the service was stopping; the copy stays "
                              "queued.",
        "dest_hint_failed_earlier": "not tried because {dest} failed earlier in this pass; the "
                                    "copy stays queued.",
        "dest_hint_archive_missing": "the local archive of {sid} is missing, so it cannot be "
                                     "copied to {dest}; run `siip-watcher verify --all` to see "
                                     "what the backup folder holds.",
        "dest_hint_retry_at": "the local backup is kept and the copy stays queued; next try at "
                              "{when} (or run `siip-watcher once`).",
        "dest_hint_fix_cause": "fix the cause (see the technical detail), then run "
                               "`siip-watcher once`; the local backup is kept (next automatic "
                               "try at {when}).",
        "dest_hint_waits_for_base": "not tried because its base full backup, {base}, is not on "
                                    "{dest} yet; it is sent after that one and stays queued.",
        "dest_hint_base_gone": "its base full backup, {base}, is no longer in the backup folder "
                               "and never reached {dest}, so {sid} could not be restored from "
                               "there; the next run takes a full backup.",
        "dest_older": "{dest} (older copy, {sid})",
        "security_starttls": "STARTTLS",
        "security_ssl": "TLS from the first byte (SSL)",
        "security_none": "none (no TLS)",
    },
}

#: the status word in the subject stays English in both languages, so mail filters work
SUBJECT_STATUS = {"ok": "OK", "warning": "WARNING", "failed": "FAILED"}


def text(language: str, key: str, **values: object) -> str:
    """The text ``key`` in ``language``, with ``{placeholders}`` filled from ``values``."""
    return TEXTS[language][key].format(**values)
