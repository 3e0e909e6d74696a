<#
.SYNOPSIS
    Register siip-watcher as a Windows service with NSSM (https://nssm.cc).

.DESCRIPTION
    Installs (or updates) the service NAME running `siip-watcher -c CONFIG start` under its own
    virtual account "NT SERVICE\NAME", with:
      - log files in LogDir (stdout and stderr), rotated by NSSM at 10 MB and daily;
      - restart after a crash or a lost file watcher (exit 1), but not after a configuration
        error or a second instance (exit 2), which need the admin;
      - a clean stop: NSSM sends Ctrl+C, siip-watcher lets a running snapshot finish within
        schedule.stop_timeout_seconds (default 30 s) and aborts it otherwise;
      - the SMTP password (optional) in a file only the service account and administrators can
        read, passed as SIIP_WATCHER_EMAIL_PASSWORD_FILE (never in the registry, which local
        users can read);
      - file permissions: read on the project, modify on the backup dir and on the database's
        folder (SQLite creates its -wal/-shm files beside a WAL database).
    Run it again to change settings; it updates the existing service. See docs\service.md.

.EXAMPLE
    .\scripts\install-windows-service.ps1 -InstallDir C:\siip-watcher `
        -ConfigFile C:\siip-watcher\siip-watcher.toml -ProjectDir C:\SIIP -BackupDir D:\backups\siip `
        -SmtpPassword (Read-Host -AsSecureString "Gmail app password")

.EXAMPLE
    .\scripts\install-windows-service.ps1 -Uninstall
#>
[CmdletBinding()]
param(
    # where siip-watcher is installed (with its virtual environment in .venv)
    [string]$InstallDir = "C:\siip-watcher",
    # the TOML configuration file
    [string]$ConfigFile = "C:\siip-watcher\siip-watcher.toml",
    # source.root: the project folder (read access is granted)
    [string]$ProjectDir,
    # local.dir: the backup folder (modify access is granted; created if missing)
    [string]$BackupDir,
    # the database's folder when it is not the project folder itself
    [string]$DatabaseDir,
    # where NSSM writes the service's output
    [string]$LogDir = "C:\siip-watcher\logs",
    [string]$ServiceName = "siip-watcher",
    # nssm.exe; by default the one on PATH
    [string]$Nssm = "nssm.exe",
    # the SMTP password, stored in a protected file (omit to keep the current one)
    [System.Security.SecureString]$SmtpPassword,
    # seconds NSSM waits after Ctrl+C; keep above schedule.stop_timeout_seconds + 15
    [int]$StopTimeoutSeconds = 60,
    [switch]$Uninstall
)

$ErrorActionPreference = "Stop"

function Assert-Admin {
    $id = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($id)
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw "run this script from an elevated PowerShell (Run as administrator)"
    }
}

function Invoke-Nssm {
    & $script:NssmExe @args
    if ($LASTEXITCODE -ne 0) { throw "nssm $($args -join ' ') failed (exit $LASTEXITCODE)" }
}

function Grant-Access([string]$Path, [string]$Rights) {
    # (OI)(CI): inherited by files and folders below; /T not needed for new inheritance
    & icacls.exe $Path /grant "${script:Account}:(OI)(CI)$Rights" | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "icacls could not grant $Rights on $Path to $script:Account" }
}

Assert-Admin
$script:NssmExe = (Get-Command $Nssm -ErrorAction SilentlyContinue).Source
if (-not $script:NssmExe) {
    throw "nssm.exe not found; download it from https://nssm.cc/download and pass -Nssm C:\path\to\nssm.exe"
}
$script:Account = "NT SERVICE\$ServiceName"
$existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue

if ($Uninstall) {
    if ($existing) {
        & $script:NssmExe stop $ServiceName | Out-Null
        Invoke-Nssm remove $ServiceName confirm
        Write-Host "removed the service $ServiceName (logs, backups and configuration are kept)"
    } else {
        Write-Host "no service named $ServiceName"
    }
    exit 0
}

$exe = Join-Path $InstallDir ".venv\Scripts\siip-watcher.exe"
if (-not (Test-Path $exe)) {
    throw "$exe not found; install siip-watcher first: py -3.11 -m venv $InstallDir\.venv; $InstallDir\.venv\Scripts\pip install $InstallDir"
}
if (-not (Test-Path $ConfigFile)) {
    throw "$ConfigFile not found; create it with: $exe config init -o $ConfigFile"
}
# the configuration must be valid before the service depends on it
& $exe -c $ConfigFile config check | Out-Null
if ($LASTEXITCODE -ne 0) { throw "the configuration is not valid; run: $exe -c $ConfigFile config check" }

New-Item -ItemType Directory -Force -Path $LogDir | Out-Null
$secretsDir = Join-Path $InstallDir "secrets"

if (-not $existing) {
    Invoke-Nssm install $ServiceName $exe
}
Invoke-Nssm set $ServiceName Application $exe
Invoke-Nssm set $ServiceName AppParameters "-c `"$ConfigFile`" start"
Invoke-Nssm set $ServiceName AppDirectory $InstallDir
Invoke-Nssm set $ServiceName DisplayName "siip-watcher backups"
Invoke-Nssm set $ServiceName Description "Change-triggered backups of the SIIP web application (siip-watcher)."
Invoke-Nssm set $ServiceName Start SERVICE_DELAYED_AUTO_START

# logs: both streams into one file, rotated while running (10 MB) and daily
$log = Join-Path $LogDir "siip-watcher.log"
Invoke-Nssm set $ServiceName AppStdout $log
Invoke-Nssm set $ServiceName AppStderr $log
Invoke-Nssm set $ServiceName AppStdoutCreationDisposition 4
Invoke-Nssm set $ServiceName AppStderrCreationDisposition 4
Invoke-Nssm set $ServiceName AppRotateFiles 1
Invoke-Nssm set $ServiceName AppRotateOnline 1
Invoke-Nssm set $ServiceName AppRotateBytes 10485760
Invoke-Nssm set $ServiceName AppRotateSeconds 86400

# restart policy: exit 2 (configuration, already running) stops; anything else restarts
Invoke-Nssm set $ServiceName AppExit Default Restart
Invoke-Nssm set $ServiceName AppExit 0 Exit
Invoke-Nssm set $ServiceName AppExit 2 Exit
Invoke-Nssm set $ServiceName AppRestartDelay 30000
Invoke-Nssm set $ServiceName AppThrottle 10000

# stopping: Ctrl+C first (siip-watcher stops cleanly), then give up after the timeout
Invoke-Nssm set $ServiceName AppStopMethodSkip 0
Invoke-Nssm set $ServiceName AppStopMethodConsole ($StopTimeoutSeconds * 1000)
Invoke-Nssm set $ServiceName AppStopMethodWindow 5000
Invoke-Nssm set $ServiceName AppStopMethodThreads 5000
Invoke-Nssm set $ServiceName AppKillProcessTree 1
# a service has no console of its own; NSSM's console makes Ctrl+C delivery possible
Invoke-Nssm set $ServiceName AppNoConsole 0

# the service's own virtual account: no password to manage, only the rights granted below
& sc.exe config $ServiceName obj= $script:Account | Out-Null
if ($LASTEXITCODE -ne 0) { throw "sc.exe could not set the service account to $script:Account" }

$environment = @("PYTHONUNBUFFERED=1", "PYTHONIOENCODING=utf-8")
if ($SmtpPassword) {
    New-Item -ItemType Directory -Force -Path $secretsDir | Out-Null
    $file = Join-Path $secretsDir "smtp-password"
    $plain = [Runtime.InteropServices.Marshal]::PtrToStringBSTR(
        [Runtime.InteropServices.Marshal]::SecureStringToBSTR($SmtpPassword))
    [IO.File]::WriteAllText($file, $plain)
    $plain = $null
    # only the service account, SYSTEM and administrators may read it; nothing inherited
    & icacls.exe $file /inheritance:r /grant:r "${script:Account}:R" "SYSTEM:F" "Administrators:F" | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "icacls could not protect $file" }
}
$passwordFile = Join-Path $secretsDir "smtp-password"
if (Test-Path $passwordFile) {
    $environment += "SIIP_WATCHER_EMAIL_PASSWORD_FILE=$passwordFile"
}
Invoke-Nssm set $ServiceName AppEnvironmentExtra @environment

# file permissions for the service account
Grant-Access $InstallDir "RX"
Grant-Access $LogDir "M"
if (Test-Path $secretsDir) { & icacls.exe $secretsDir /grant "${script:Account}:(OI)(CI)R" | Out-Null }
if ($ProjectDir) {
    Grant-Access $ProjectDir "RX"
    if (-not $DatabaseDir) { $DatabaseDir = $ProjectDir }
}
if ($DatabaseDir) { Grant-Access $DatabaseDir "M" }
if ($BackupDir) {
    New-Item -ItemType Directory -Force -Path $BackupDir | Out-Null
    Grant-Access $BackupDir "M"
}
& icacls.exe $ConfigFile /grant "${script:Account}:R" | Out-Null

# (re)start so the new settings apply
if ((Get-Service -Name $ServiceName).Status -ne "Stopped") { Invoke-Nssm stop $ServiceName }
Invoke-Nssm start $ServiceName
Start-Sleep -Seconds 3
$svc = Get-Service -Name $ServiceName
Write-Host "service $ServiceName is $($svc.Status)"
Write-Host "log:    Get-Content -Wait $log"
Write-Host "status: & '$exe' -c '$ConfigFile' status"
if ($svc.Status -ne "Running") {
    Write-Warning "the service is not running; read $log and run: & '$exe' -c '$ConfigFile' config check"
    exit 1
}
