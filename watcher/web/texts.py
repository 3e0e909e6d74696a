"""Every word of the monitor page, in Spanish (the default) and English.

The words the page shares with the email report (a run's status and trigger, a copy's state and
what to do about it, a problem and its cause) come from :mod:`watcher.notify.texts`, so the
office reads the same sentence in both places; :func:`say` looks here first, then there.
"""

from __future__ import annotations

from watcher.notify.texts import TEXTS, text

WEB_TEXTS: dict[str, dict[str, str]] = {
    "es": {
        "title": "Copias de seguridad de {name}",
        "other_language": "English",
        "service_running": "El servicio de copias está en marcha",
        "service_stopped": "El servicio de copias NO está en marcha",
        "section_now": "Situación",
        "last_run": "Última copia",
        "last_run_none": "todavía no se ha hecho ninguna",
        "result": "Resultado",
        "when": "Cuándo",
        "size": "Tamaño",
        "duration": "Duración",
        "next_run": "Próxima copia programada",
        "next_run_if_changed": "{when}, si algo cambia",
        "next_run_asap": "en cuanto sea posible (aún no hay ninguna copia)",
        "changes": "Cambios sin copiar",
        "changes_none": "ninguno desde la última copia",
        "changes_pending": "{events} cambios desde {since}",
        "changes_unknown": "no se vigilan mientras el servicio está detenido",
        "backup_now": "Respaldar ahora",
        "backup_running": "Copia en curso desde {since} ({elapsed})",
        "backup_started": "Copia pedida: empieza ahora.",
        "backup_already": "Ya hay una copia en curso; no se empieza otra.",
        "backup_busy": "Se está haciendo una copia desde la línea de órdenes "
                       "(`siip-watcher once`); espere a que termine.",
        "backup_stopping": "El servicio se está deteniendo; no se empieza ninguna copia.",
        "backup_error": "No se pudo pedir la copia; recargue la página.",
        "section_destinations": "Destinos",
        "dest_local": "este servidor",
        "dest_up_to_date": "al día",
        "dest_queue": "pendientes: {pending} · con error: {failed}",
        "dest_none": "Solo se guardan en este servidor (no hay destinos configurados).",
        "section_warnings": "Qué revisar",
        "all_well": "Todo en orden: no hay nada que revisar.",
        "warn_service_stopped": "El servicio de copias no está en marcha: no se harán copias "
                                "automáticas.",
        "warn_service_stopped_hint": "arránquelo (systemctl start siip-watcher) y compruebe "
                                     "`siip-watcher status`.",
        "warn_alert": "Posible pérdida de datos desde {since}: no se borrará ninguna copia "
                      "antigua hasta que se revise.",
        "warn_last_failed": "La última copia ({when}) falló: no se creó ninguna copia nueva.",
        "warn_copy": "{snapshot} → {dest}: {state}",
        "section_chart": "Últimas ejecuciones",
        "chart_caption": "Tamaño (barras) y duración (línea) de las últimas {n} ejecuciones; "
                         "en amarillo, las que tuvieron avisos; en rojo, las que fallaron.",
        "chart_empty": "Todavía no hay ejecuciones que mostrar.",
        "section_snapshots": "Copias guardadas",
        "col_id": "Copia",
        "col_kind": "Tipo",
        "col_size": "Tamaño",
        "col_where": "Dónde está",
        "kind_full": "completa",
        "kind_delta": "incremental",
        "snapshots_none": "Todavía no hay ninguna copia.",
        "snapshots_more": "… y {n} más antiguas (`siip-watcher list` las muestra todas).",
        "updated": "Actualizado: {when}",
        "ago": "hace {span}",
        "in": "dentro de {span}",
        "span_seconds": "{n} s",
        "span_minutes": "{n} min",
        "span_hours": "{n} h",
        "span_days": "{n} días",
        "login_title": "Monitor de copias de seguridad",
        "login_prompt": "Escriba el token de acceso del monitor.",
        "login_token": "Token de acceso",
        "login_button": "Entrar",
        "login_wrong": "Token incorrecto.",
        "logout": "Salir",
        "forbidden": "Prohibido: falta el token CSRF de la página o el token de acceso.",
    },
    "en": {
        "title": "Backups of {name}",
        "other_language": "Español",
        "service_running": "The backup service is running",
        "service_stopped": "The backup service is NOT running",
        "section_now": "Now",
        "last_run": "Last backup",
        "last_run_none": "none has been made yet",
        "result": "Result",
        "when": "When",
        "size": "Size",
        "duration": "Duration",
        "next_run": "Next scheduled backup",
        "next_run_if_changed": "{when}, if something changes",
        "next_run_asap": "as soon as possible (there is no snapshot yet)",
        "changes": "Changes not yet backed up",
        "changes_none": "none since the last snapshot",
        "changes_pending": "{events} changes since {since}",
        "changes_unknown": "not watched while the service is stopped",
        "backup_now": "Back up now",
        "backup_running": "Backup in progress since {since} ({elapsed})",
        "backup_started": "Backup asked for: it starts now.",
        "backup_already": "A backup is already in progress; no second one is started.",
        "backup_busy": "A backup started from the command line (`siip-watcher once`) is "
                       "running; wait for it to finish.",
        "backup_stopping": "The service is stopping; no backup is started.",
        "backup_error": "The backup could not be asked for; reload the page.",
        "section_destinations": "Destinations",
        "dest_local": "this server",
        "dest_up_to_date": "up to date",
        "dest_queue": "pending: {pending} · failed: {failed}",
        "dest_none": "Kept on this server only (no destination is configured).",
        "section_warnings": "What to check",
        "all_well": "All is well: there is nothing to check.",
        "warn_service_stopped": "The backup service is not running: no automatic backups "
                                "will be made.",
        "warn_service_stopped_hint": "start it (systemctl start siip-watcher) and check "
                                     "`siip-watcher status`.",
        "warn_alert": "Possible data loss since {since}: no old snapshot is deleted until "
                      "someone checks.",
        "warn_last_failed": "The last backup ({when}) failed: no new snapshot was made.",
        "warn_copy": "{snapshot} → {dest}: {state}",
        "section_chart": "Recent runs",
        "chart_caption": "Size (bars) and duration (line) of the last {n} runs; yellow: with "
                         "warnings; red: failed.",
        "chart_empty": "No runs to show yet.",
        "section_snapshots": "Snapshots",
        "col_id": "Snapshot",
        "col_kind": "Kind",
        "col_size": "Size",
        "col_where": "Stored at",
        "kind_full": "full",
        "kind_delta": "delta",
        "snapshots_none": "No snapshot yet.",
        "snapshots_more": "… and {n} older ones (`siip-watcher list` shows them all).",
        "updated": "Updated: {when}",
        "ago": "{span} ago",
        "in": "in {span}",
        "span_seconds": "{n} s",
        "span_minutes": "{n} min",
        "span_hours": "{n} h",
        "span_days": "{n} days",
        "login_title": "Backup monitor",
        "login_prompt": "Enter the monitor's access token.",
        "login_token": "Access token",
        "login_button": "Sign in",
        "login_wrong": "Wrong token.",
        "logout": "Sign out",
        "forbidden": "Forbidden: the page's CSRF token or the access token is missing.",
    },
}


def say(language: str, key: str, **values: object) -> str:
    """The page's text ``key`` in ``language`` (else the email's words for it), filled from
    ``values``."""
    own = WEB_TEXTS[language].get(key)
    if own is None:
        return text(language, key, **values)
    return own.format(**values)


def has(language: str, key: str) -> bool:
    """There are words for ``key`` (the page's or the email's) in ``language``."""
    return key in WEB_TEXTS[language] or key in TEXTS[language]
