//! Command-line definitions.

use std::path::PathBuf;

use aeon_core::keys::KdfParams;
use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Password: AEON_PASSWORD, AEON_PASSWORD_FILE, AEON_PASSWORD_COMMAND, or a prompt on a terminal.
Exit codes: 0 ok, 1 error, 2 usage, 3 incomplete (backup: some files unreadable, recovery point
written; locations status: a location lacks objects), 4 damage found (check failed, or restore met data that failed verification),
10 no repository, 11 locked (another prune runs), 12 wrong password, 13 storage full or quota reached.

Start here:
  aeon init -r /srv/backup
  aeon backup -r /srv/backup ~/Documents
  aeon snapshots -r /srv/backup
  aeon restore -r /srv/backup latest --target /tmp/restored";

#[derive(Parser, Debug)]
#[command(
    name = "aeon",
    version,
    about = "Fast, verifiable, deduplicated and encrypted backups",
    after_help = AFTER_HELP,
    disable_version_flag = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalOpts {
    /// Repository: a local folder, s3:http://host:port/bucket/prefix, sftp:user@host:port//path,
    /// or webdav:https://host/path
    #[arg(short = 'r', long = "repo", env = "AEON_REPOSITORY", global = true, value_name = "REPO")]
    pub repo: Option<String>,

    /// Read the password from the first line of this file
    #[arg(long, env = "AEON_PASSWORD_FILE", global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Run this shell command and use its output as the password
    #[arg(long, env = "AEON_PASSWORD_COMMAND", global = true, value_name = "CMD")]
    pub password_command: Option<String>,

    /// Open the repository with this key file or secret key instead of a password (also
    /// AEON_KEY_FILE). With `key add`, the key file to create
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Never delete or replace anything in the repository (for a storage credential that cannot
    /// delete): backups work; forget, prune and the like refuse. Locks are left to go stale
    #[arg(long, env = "AEON_APPEND_ONLY", global = true)]
    pub append_only: bool,

    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only errors and warnings
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print more detail (repeat for more)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Worker threads, 1 to 1024 (default: one per core)
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Upload at most this many KiB/s (remote storage)
    #[arg(long, global = true, value_name = "KIBPS")]
    pub limit_upload: Option<u64>,

    /// Download at most this many KiB/s (remote storage)
    #[arg(long, global = true, value_name = "KIBPS")]
    pub limit_download: Option<u64>,

    /// SFTP: private key file
    #[arg(long, env = "AEON_SFTP_KEY", global = true, value_name = "FILE")]
    pub sftp_key: Option<String>,

    /// SFTP: unknown host keys are refused (strict), recorded (add) or accepted (accept)
    #[arg(long, env = "AEON_SFTP_KNOWN_HOSTS", global = true, default_value = "strict", value_parser = ["strict", "add", "accept"])]
    pub sftp_known_hosts: String,

    /// WebDAV: user name (the password comes from AEON_WEBDAV_PASSWORD)
    #[arg(long, env = "AEON_WEBDAV_USER", global = true, value_name = "USER")]
    pub webdav_user: Option<String>,

    /// S3: address buckets as bucket.host (virtual-host style) instead of host/bucket
    #[arg(long, env = "AEON_S3_VIRTUAL_HOST", global = true)]
    pub s3_virtual_host: bool,

    /// Folder of the local metadata cache of remote repositories (default: ~/.cache/aeon)
    #[arg(long, env = "AEON_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Do not cache metadata of remote repositories locally
    #[arg(long, global = true)]
    pub no_cache: bool,

    /// Take no lock (for read-only storage; never while prune may run)
    #[arg(long, global = true)]
    pub no_lock: bool,

    /// Configuration file with profiles (default: ~/.config/aeon/aeon.toml, else
    /// /etc/aeon/aeon.toml, if one exists)
    #[arg(long, env = "AEON_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Profile of the configuration file to use (default: the `[default]` profile, if there is one); its
    /// keys fill in what flags and environment variables do not give
    #[arg(long, env = "AEON_PROFILE", global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// The profile's literal `password`, when it has one (not a flag).
    #[arg(skip)]
    pub profile_password: Option<String>,

    /// Print the version and exit
    #[arg(long = "version", short = 'V', action = clap::ArgAction::SetTrue)]
    pub version: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    Init(InitArgs),
    /// Back up files and directories into a new recovery point
    Backup(BackupArgs),
    /// List recovery points
    Snapshots(SnapshotsArgs),
    /// Restore a recovery point, a directory or one file
    Restore(RestoreArgs),
    /// Mount every recovery point as a read-only file system (FUSE), until Ctrl-C
    ///
    /// The mount shows `snapshots/TIME_ID/` (and `snapshots/latest`), `hosts/HOST/…`,
    /// `tags/TAG/…`, and `at/YYYY-MM-DD[THH:MM]` for the newest point at or before a time.
    /// Files are read, verified, from the repository as they are opened; new points appear
    /// without remounting. Unmount with Ctrl-C or `fusermount3 -u DIR`.
    Mount(MountArgs),
    /// List files in a recovery point
    Ls(LsArgs),
    /// Print repository objects, decrypted, as JSON (for debugging)
    Cat(CatArgs),
    /// Verify the repository; --read-data reads and verifies every byte
    Check(CheckArgs),
    /// Find files by name or path in every recovery point
    Find(FindArgs),
    /// Show what changed between two recovery points, or against the live file system
    Diff(DiffArgs),
    /// Write a file (or a directory, as tar) from a recovery point to standard output
    Dump(DumpArgs),
    /// Remove recovery points by a retention policy (or by id); --prune frees their data
    Forget(ForgetArgs),
    /// Delete data no recovery point uses and repack partly used packs
    Prune(PruneArgs),
    /// Protect recovery points: forget never removes them
    Protect(ProtectArgs),
    /// Remove the protection of recovery points
    Unprotect(ProtectArgs),
    /// Add, remove or set the tags (or the description) of recovery points; their ids stay
    Tag(TagArgs),
    /// Remove stale locks left by crashed processes
    Unlock(UnlockArgs),
    /// Show sizes, deduplication, compression, and what each recovery point alone holds
    Stats(StatsArgs),
    /// Show, set or remove the retention policies stored in the repository
    Policy(PolicyArgs),
    /// Show, set or remove the repository's storage quota
    Quota(QuotaArgs),
    /// Copy recovery points from another repository into this one (re-encrypted, deduplicated)
    Copy(CopyArgs),
    /// Bring the history of a restic or Borg repository over: every snapshot or archive
    /// becomes a recovery point
    ///
    /// Each keeps its time, host, user, paths and tags (a Borg archive's name becomes a tag),
    /// and its files with their attributes; contents are deduplicated as they arrive. Run it
    /// again to import only what is new (imported points are recognised by their source id).
    ///
    /// Examples:
    ///   AEON_FROM_PASSWORD=… aeon import restic /srv/restic-repo --dry-run
    ///   aeon import restic s3:http://minio:9000/bucket/restic --from-password-file pw.txt
    ///   BORG_PASSPHRASE=… aeon import borg /srv/borg-repo
    ///   aeon import borg /srv/borg-repo::laptop-2026-12-01
    Import(ImportArgs),
    /// Health and gaps of the locations of a multi-location repository; fill the gaps
    Locations(LocationsArgs),
    /// Reed-Solomon parity over packs: show, set or turn off
    Parity(ParityArgs),
    /// Find missing, truncated and damaged objects and rebuild them from parity, copies and
    /// other locations; name what is lost
    Repair(RepairArgs),
    /// Prove that a directory (a restore, or the live source) equals a recovery point: every
    /// file is read and hashed as a backup would, and compared with the point's tree
    Verify(VerifyArgs),
    /// Key slots: list, add (password, key file, post-quantum public key), change, remove;
    /// make key pairs
    Key(KeyArgs),
    /// The tamper-evident log of every operation: show it, verify it
    Audit(AuditArgs),
    /// A compliance report: per host and path what is protected and since when, retention
    /// adherence, the last check and scrub coverage, protected points, keys, quota, audit state
    Report(ReportArgs),
    /// Disaster recovery: `dr plan` (a runbook) and `dr drill` (a measured, proven restore)
    Dr(DrArgs),
    /// Run the configuration file's schedules (backups, forget + prune, checks) until SIGTERM;
    /// `aeon agent status` shows each job's last and next run
    Agent(AgentArgs),
    /// Prometheus metrics of the repository (and of the agent's jobs), printed or written for
    /// node_exporter's textfile collector
    Metrics(MetricsArgs),
    /// Check the configuration file (line-numbered errors) or show a profile as resolved
    Config(ConfigArgs),
    /// Print a shell completion script: `aeon completions bash > /etc/bash_completion.d/aeon`
    Completions(CompletionsArgs),
    /// Write man pages (aeon.1, aeon-backup.1, …) into a folder
    Man(ManArgs),
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub action: Option<AgentAction>,
    /// Where the agent keeps what it knows of each job (default: $XDG_STATE_HOME/aeon or
    /// ~/.local/state/aeon)
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Log lines as JSON objects (`json`) or text (`text`, the default), on stderr
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Serve Prometheus metrics at http://ADDRESS/metrics and the dashboard at http://ADDRESS/
    /// (e.g. 127.0.0.1:9911; an address beyond loopback exposes the dashboard to the network)
    #[arg(long, value_name = "ADDRESS")]
    pub listen: Option<std::net::SocketAddr>,
    /// The dashboard's login token: read from FILE, or created there (random, mode 0600)
    /// [default: dashboard.token in the state folder]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Restores started from the dashboard may only write beneath DIR
    #[arg(long, value_name = "DIR")]
    pub restore_under: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// Write the metrics into DIR/aeon.prom (atomically) for node_exporter's textfile
    /// collector, instead of printing them
    #[arg(long, value_name = "DIR")]
    pub textfile: Option<PathBuf>,
    /// The agent's state folder, for the metrics of its jobs (default: the agent's default)
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum AgentAction {
    /// Each scheduled job: last start, outcome and success, failures in a row, next run
    Status,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Validate the configuration file: syntax, unknown keys, values, inheritance (exit 1 with
    /// `FILE:LINE: problem` lines)
    Check,
    /// Show the profile in use (--profile) with what it inherits filled in
    Show,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    #[arg(value_parser = ["bash", "zsh", "fish", "elvish", "powershell"])]
    pub shell: String,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Folder to write the pages into (created if missing)
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct DrArgs {
    #[command(subcommand)]
    pub action: DrAction,
}

#[derive(Subcommand, Debug)]
pub enum DrAction {
    /// A runbook: for each host and paths, the newest sound point, the locations holding it and
    /// their health, the keys that open it, the commands to restore and prove it, and the
    /// estimated recovery time from measured throughput (Markdown; JSON with --json)
    Plan {
        /// Write the runbook to this file instead of standard output
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Restore the newest point (or a sample of its files) into a scratch folder, prove every
    /// byte and attribute against the point, measure the recovery time, and record it in the
    /// audit log; exit 4 on any difference
    Drill {
        /// Only points of this host
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Only points that back up PATH, and only PATH of them
        #[arg(long, value_name = "PATH")]
        path: Option<String>,
        /// Restore N files picked at random instead of everything
        #[arg(long, value_name = "N")]
        sample: Option<usize>,
        /// Where to restore (must not exist or be empty) [default: a new folder in $TMPDIR]
        #[arg(long, value_name = "DIR")]
        scratch: Option<PathBuf>,
        /// Keep the restored files (default: removed after the drill)
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// md (Markdown), html (one self-contained page, opens in a browser without a server) or
    /// json (also with --json)
    #[arg(long, default_value = "md", value_parser = ["md", "html", "json"])]
    pub format: String,
    /// Write the report to this file instead of standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
}

/// Argon2id costs of a new password slot (defaults as `init`'s).
#[derive(Args, Debug, Clone)]
pub struct KdfArgs {
    /// Argon2id memory of the new password slot, in MiB (at least 8)
    #[arg(long, default_value_t = KdfParams::default().memory_kib / 1024, value_name = "MIB")]
    pub kdf_memory: u32,
    /// Argon2id passes of the new password slot
    #[arg(long, visible_alias = "kdf-passes", default_value_t = KdfParams::default().iterations, value_name = "N")]
    pub kdf_iterations: u32,
    /// Argon2id lanes of the new password slot
    #[arg(long, default_value_t = KdfParams::default().parallelism, value_name = "N")]
    pub kdf_lanes: u32,
}

#[derive(Subcommand, Debug)]
pub enum KeyAction {
    /// List the key slots: id, type, label, created, and which one opened the repository
    List,
    /// Add a key slot: a password (from AEON_NEW_PASSWORD, --new-password-file or a prompt),
    /// a new random key file (--key-file FILE, created), or a public key (--public FILE, from
    /// `aeon key generate`). The repository opens with AEON_KEY_FILE or a password.
    Add {
        /// Add the holder of this public key (made by `aeon key generate`): it opens the
        /// repository with the matching secret key file (--key-file SECRET)
        #[arg(long, value_name = "PUBFILE")]
        public: Option<PathBuf>,
        /// With --public: a write-only client. Whoever holds PUBFILE runs `aeon --key-file
        /// PUBFILE backup …`: it adds recovery points (post-quantum sealed, deduplicated against
        /// its own earlier ones) and can read, delete or replace nothing; full keys read them
        #[arg(long, requires = "public")]
        write_only: bool,
        /// A label for the slot (default: user@host); stored sealed, only key holders read it
        #[arg(long)]
        label: Option<String>,
        /// Read the new password from the first line of this file (else AEON_NEW_PASSWORD, or
        /// a prompt)
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Change the password of the slot in use: a new slot replaces it
    Passwd {
        /// Read the new password from the first line of this file (else AEON_NEW_PASSWORD, or
        /// a prompt)
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Remove a key slot (never the last that can read; the one in use only with --force)
    Remove {
        /// The slot's id (a unique prefix is enough)
        id: String,
        /// Remove the slot that opened the repository too
        #[arg(long)]
        force: bool,
    },
    /// Make a hybrid post-quantum key pair (X-Wing: ML-KEM-768 + X25519): the public half for
    /// `aeon key add --public`, the secret half to open with --key-file
    Generate {
        /// Where to write the public key
        #[arg(long, value_name = "OUT")]
        public: PathBuf,
        /// Where to write the secret key (default: OUT with `.secret` in place of `.pub`, or
        /// added)
        #[arg(long, value_name = "FILE")]
        secret: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: AuditAction,
}

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Show the records, oldest first
    Log {
        /// Only records from this time on (RFC 3339, or a date YYYY-MM-DD)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
    /// Check every record: links, signatures, registered keys; with --head, that a head kept
    /// elsewhere is still in the log (exit 4 when anything is wrong)
    Verify {
        /// A head printed earlier (aeon -v …, or "audit_head" in --json output)
        #[arg(long, value_name = "HASH")]
        head: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The recovery point, and optionally the path in it: ID, latest, ID:/home/ann
    #[arg(value_name = "ID[:PATH]")]
    pub point: String,
    /// The directory to compare with it (for a whole point: the --target of its restore)
    #[arg(long, value_name = "DIR")]
    pub target: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct LocationsArgs {
    #[command(subcommand)]
    pub action: LocationsAction,
}

#[derive(Subcommand, Debug)]
pub enum LocationsAction {
    /// Each location's health and what it is missing
    Status,
    /// Copy what a location is missing from the others
    Sync,
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The repository to copy from (any location form)
    #[arg(long, env = "AEON_FROM_REPOSITORY", value_name = "REPO")]
    pub from_repo: String,
    /// Password file of the source repository (or AEON_FROM_PASSWORD)
    #[arg(long, env = "AEON_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Recovery points to copy (default: all)
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: PointFilter,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub from: ImportFrom,
}

#[derive(Subcommand, Debug)]
pub enum ImportFrom {
    /// A restic repository (format 1 or 2): a local path or an s3:, sftp: or webdav: URL
    Restic(ImportResticArgs),
    /// A Borg 1.x repository, REPO or REPO::ARCHIVE (read through the installed borg)
    Borg(ImportBorgArgs),
}

#[derive(Args, Debug)]
pub struct ImportResticArgs {
    /// The restic repository
    #[arg(value_name = "REPO")]
    pub source: String,
    /// Only these snapshots (ids or id prefixes); all when none are given
    #[arg(long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub common: ImportCommon,
}

#[derive(Args, Debug)]
pub struct ImportBorgArgs {
    /// The Borg repository, or one archive of it as REPO::ARCHIVE
    #[arg(value_name = "REPO")]
    pub source: String,
    /// The borg program to read the repository with
    #[arg(long, env = "AEON_BORG", value_name = "PATH", default_value = "borg")]
    pub borg: String,
    #[command(flatten)]
    pub common: ImportCommon,
}

#[derive(Args, Debug)]
pub struct ImportCommon {
    /// Password file of the source repository (or AEON_FROM_PASSWORD; Borg also honours
    /// BORG_PASSPHRASE)
    #[arg(long, env = "AEON_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// A command that prints the source repository's password
    #[arg(long, env = "AEON_FROM_PASSWORD_COMMAND", value_name = "COMMAND")]
    pub from_password_command: Option<String>,
    /// List what would be imported; write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Which recovery points a command considers.
#[derive(Args, Debug, Clone, Default)]
pub struct PointFilter {
    /// Only recovery points of this host
    #[arg(long = "host")]
    pub host: Option<String>,
    /// Only recovery points with this tag (repeatable: all must match)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only recovery points that include this path (repeatable: all must match)
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Only recovery points of this category
    #[arg(long)]
    pub category: Option<String>,
}

impl PointFilter {
    pub fn matches(&self, e: &aeon_core::snapshot::SnapshotEntry) -> bool {
        let s = &e.snapshot;
        self.host.as_ref().is_none_or(|h| &s.hostname == h)
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self.paths.iter().all(|p| s.paths.iter().any(|sp| sp == p))
            && self.category.as_ref().is_none_or(|c| s.category.as_ref() == Some(c))
    }
}

/// The rules of a retention policy (all optional; a point kept by any rule is kept).
#[derive(Args, Debug, Clone, Default)]
pub struct PolicyFlags {
    /// Keep the N newest recovery points
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest point of each of the N newest hours that have one
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest point of each of the N newest days that have one
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest point of each of the N newest ISO weeks that have one
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest point of each of the N newest months that have one
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest point of each of the N newest years that have one
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every point taken within DURATION of the newest (e.g. 1y6m, 14d, 36h)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep the newest point of each hour within DURATION of the newest point
    #[arg(long, value_name = "DURATION")]
    pub keep_within_hourly: Option<String>,
    /// Keep the newest point of each day within DURATION of the newest point
    #[arg(long, value_name = "DURATION")]
    pub keep_within_daily: Option<String>,
    /// Keep the newest point of each week within DURATION of the newest point
    #[arg(long, value_name = "DURATION")]
    pub keep_within_weekly: Option<String>,
    /// Keep the newest point of each month within DURATION of the newest point
    #[arg(long, value_name = "DURATION")]
    pub keep_within_monthly: Option<String>,
    /// Keep the newest point of each year within DURATION of the newest point
    #[arg(long, value_name = "DURATION")]
    pub keep_within_yearly: Option<String>,
    /// Keep points carrying this tag (a,b: carrying both); repeatable
    #[arg(long = "keep-tag", value_name = "TAGS")]
    pub keep_tags: Vec<String>,
    /// Never keep more than N points per group (protected points always stay)
    #[arg(long, value_name = "N")]
    pub max_points: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Recovery points to forget by id (instead of by policy)
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// Group points by host, paths and/or tags before applying the policy ("" for one group)
    #[arg(long, default_value = "host,paths", value_name = "FIELDS")]
    pub group_by: String,
    #[command(flatten)]
    pub filter: PointFilter,
    /// Time zone of the calendar rules (IANA name such as Europe/Berlin; default: local)
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Show what would be kept and removed, and why; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Then run prune to free the data only the forgotten points used
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_opts: PruneTuning,
}

#[derive(Args, Debug, Clone)]
pub struct PruneTuning {
    /// Repack packs with more than this much unused space (percent)
    #[arg(long, default_value = "20%", value_name = "PERCENT")]
    pub max_unused: String,
    /// Wait up to DURATION for running backups so that condemned data is deleted in this run
    /// (e.g. 10m); without it, a later prune deletes it
    #[arg(long, value_name = "DURATION")]
    pub wait: Option<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Show what would be deleted and repacked; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    #[command(flatten)]
    pub tuning: PruneTuning,
}

#[derive(Args, Debug)]
pub struct ProtectArgs {
    /// Recovery points (id, id prefix or "latest")
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
}

/// Changes labels in place: a recovery point keeps its id, so scripts that named it still work.
///
/// Examples: `aeon tag latest --add reviewed`, `aeon tag 3f2a --remove tmp --add keep`,
/// `aeon tag 3f2a 9bc1 --set release-1.4`, `aeon tag latest --description "before the upgrade"`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true)
    .args(["add", "remove", "set", "description"])))]
pub struct TagArgs {
    /// Recovery points (id, id prefix or "latest")
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
    /// Add a tag (repeatable, or comma-separated)
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub add: Vec<String>,
    /// Remove a tag (repeatable, or comma-separated)
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub remove: Vec<String>,
    /// Replace all tags with these (repeatable, or comma-separated; `--set ""` removes all)
    #[arg(long, value_name = "TAG", value_delimiter = ',', conflicts_with_all = ["add", "remove"])]
    pub set: Option<Vec<String>>,
    /// Replace the description (`--description ""` removes it)
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lock, also those of processes that still run (dangerous: only when you
    /// know no aeon process uses the repository)
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Only these recovery points (default: all)
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub action: PolicyAction,
}

#[derive(Subcommand, Debug)]
pub enum PolicyAction {
    /// Show the stored policies
    Show,
    /// Store the policy for a category ("*": every category without its own)
    Set {
        /// Category the policy applies to
        #[arg(long, default_value = "*")]
        category: String,
        #[command(flatten)]
        policy: Box<PolicyFlags>,
    },
    /// Remove the stored policy of a category
    Remove {
        #[arg(long, default_value = "*")]
        category: String,
    },
}

#[derive(Args, Debug)]
pub struct QuotaArgs {
    #[command(subcommand)]
    pub action: QuotaAction,
}

#[derive(Subcommand, Debug)]
pub enum QuotaAction {
    /// Show the quota and the space used
    Show,
    /// Set the quota (e.g. 50GiB, 500M)
    Set {
        #[arg(value_name = "SIZE")]
        size: String,
    },
    /// Remove the quota
    Remove,
}

#[derive(Args, Debug)]
pub struct FindArgs {
    /// Name or path pattern: `*.conf`, `nginx.conf`, `/etc/**/*.pem`
    #[arg(value_name = "PATTERN")]
    pub pattern: String,
    /// Ignore case
    #[arg(long, short = 'i')]
    pub ignore_case: bool,
    /// Only entries modified at or after this time
    #[arg(long, value_name = "TIME")]
    pub newer: Option<String>,
    /// Only entries modified at or before this time
    #[arg(long, value_name = "TIME")]
    pub older: Option<String>,
    /// File size: N (exactly), +N (at least), -N (at most), with K/M/G suffixes
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub size: Option<String>,
    /// Only recovery points of this host
    #[arg(long = "host")]
    pub host: Option<String>,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The older recovery point (ID, prefix, latest; optional :PATH)
    #[arg(value_name = "ID1[:PATH]")]
    pub first: Option<String>,
    /// The newer recovery point
    #[arg(value_name = "ID2")]
    pub second: Option<String>,
    /// Compare the first recovery point with this live path instead
    #[arg(long, value_name = "PATH")]
    pub live: Option<PathBuf>,
    #[command(flatten)]
    pub at: AtArgs,
    /// Show metadata-only changes too (default: yes; --content-only hides them)
    #[arg(long)]
    pub content_only: bool,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// ID:PATH of a file or directory (with --at: :PATH)
    #[arg(value_name = "ID:PATH")]
    pub target: Option<String>,
    #[command(flatten)]
    pub at: AtArgs,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Default compression of the repository: zstd, zstd:LEVEL (1-22), lz4 or none
    #[arg(long, default_value = "zstd:3")]
    pub compression: String,
    /// Target pack size in MiB
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub pack_size: u32,
    /// Argon2id memory for the password slot, in MiB
    #[arg(long, default_value_t = KdfParams::default().memory_kib / 1024, value_name = "MIB")]
    pub kdf_memory: u32,
    /// Argon2id passes for the password slot
    #[arg(long, default_value_t = KdfParams::default().iterations, value_name = "N")]
    pub kdf_iterations: u32,
    /// Argon2id lanes for the password slot (computed in parallel on all cores)
    #[arg(long, default_value_t = KdfParams::default().parallelism, value_name = "N")]
    pub kdf_lanes: u32,
    /// Most space the repository may use (e.g. 50GiB); backups stop before passing it
    #[arg(long, value_name = "SIZE")]
    pub quota: Option<String>,
    /// A storage location of the repository (repeat: every location holds everything)
    #[arg(long = "location", value_name = "REPO")]
    pub locations: Vec<String>,
    /// Protect packs with Reed-Solomon parity: groups of DATA packs carry PARITY shards, any
    /// PARITY of which may be lost (e.g. 10+2: 20% more space; plain --parity means 10+2)
    #[arg(long, value_name = "DATA+PARITY", num_args = 0..=1, default_missing_value = "10+2")]
    pub parity: Option<String>,
    /// With several locations: `mirror` (every location holds everything) or `stripe` (each
    /// pack in one location, parity across them: with 3 locations and --parity 2+1, any one can
    /// be lost, at 1.5 times the space; --parity defaults to N-1+1)
    #[arg(long, value_name = "mirror|stripe", default_value = "mirror", value_parser = ["mirror", "stripe"])]
    pub layout: String,
}

#[derive(Args, Debug)]
pub struct ParityArgs {
    #[command(subcommand)]
    pub action: ParityAction,
}

#[derive(Subcommand, Debug)]
pub enum ParityAction {
    /// Show the scheme, what it covers and what it costs
    Show,
    /// Turn parity on (or change the scheme of new groups) and protect everything stored
    Set {
        /// DATA+PARITY, e.g. 10+2
        #[arg(value_name = "DATA+PARITY")]
        scheme: String,
    },
    /// Turn parity off and remove every parity object
    Off,
}

#[derive(Args, Debug)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub what: Option<RepairWhat>,
    /// Only list what is wrong and what would be done; write nothing (needs no password)
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum RepairWhat {
    /// Write a new index from the packs' own tables, replacing every index file
    Index,
    /// Rewrite recovery points that need lost data without the lost files (tagged `repaired`;
    /// the originals stay until you forget them)
    Snapshots,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up (default: the profile's `sources`; with
    /// --stdin-from-command: the command and its arguments, after --)
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Back up standard input as one file (named by --stdin-filename)
    #[arg(long, conflicts_with = "stdin_from_command")]
    pub stdin: bool,
    /// Run the command given after -- and back up its output; the recovery point is kept only if it exits 0
    #[arg(long)]
    pub stdin_from_command: bool,
    /// File name of the stream in the recovery point
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    pub stdin_filename: String,
    /// Host name to record (default: this machine's)
    #[arg(long = "host", value_name = "NAME")]
    pub host: Option<String>,
    /// Tag the recovery point (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Free-text description
    #[arg(long)]
    pub description: Option<String>,
    /// Category: full, config, critical, incremental, emergency, pre-deploy, post-deploy
    #[arg(long, value_parser = ["full", "config", "critical", "incremental", "emergency", "pre-deploy", "post-deploy"])]
    pub category: Option<String>,
    /// Kind of state: system, config, data, application, database
    #[arg(long, value_parser = ["system", "config", "data", "application", "database"])]
    pub kind: Option<String>,
    /// Compression for this backup (default: the repository's)
    #[arg(long)]
    pub compression: Option<String>,
    /// Compare against this recovery point instead of the latest one of the same host and paths
    #[arg(long, value_name = "ID")]
    pub parent: Option<String>,
    /// Read every file, even ones unchanged since the parent
    #[arg(long)]
    pub force: bool,
    /// Time to record, e.g. "2026-11-20 14:00:00" (UTC) or RFC 3339 (default: now)
    #[arg(long)]
    pub time: Option<String>,
    /// Leave out paths matching this pattern (repeatable; see "Patterns" in the README)
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Like --exclude, ignoring case
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexcludes: Vec<String>,
    /// Read --exclude patterns from a file (one per line, # comments)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Keep only the NAME file of directories that contain one
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Keep only CACHEDIR.TAG of directories tagged as caches
    #[arg(long)]
    pub exclude_caches: bool,
    /// Leave out files larger than SIZE (e.g. 500M, 2G)
    #[arg(long, value_name = "SIZE")]
    pub exclude_larger_than: Option<String>,
    /// Do not cross into other file systems below a source path
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Read more source paths from a file (one per line, # comments)
    #[arg(long = "files-from", value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Protect the new recovery point: forget never removes it
    #[arg(long)]
    pub protect: bool,
    /// Only the paths listed in FILE (one per line) changed since the parent: folders none of
    /// them is in or below are carried over from the parent without being listed or read. For
    /// the agent's continuous protection (`watch = true`), which knows them from the kernel; a
    /// change not listed is not seen
    #[arg(long, value_name = "FILE")]
    pub changed_paths: Option<PathBuf>,
}

/// Chooses a recovery point by time instead of by id.
#[derive(Args, Debug, Clone)]
pub struct AtArgs {
    /// Use the newest recovery point at or before this time ("2026-11-20 14:00", "2 hours ago")
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// With --at: only recovery points of this host
    #[arg(long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// With --at: only recovery points that include this path
    #[arg(long = "path", value_name = "PATH")]
    pub path: Option<String>,
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: PointFilter,
    /// Only recovery points of this kind
    #[arg(long)]
    pub kind: Option<String>,
    /// Only recovery points taken at or after this time
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only recovery points taken at or before this time
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Group the list by host, paths and/or tags (comma separated)
    #[arg(long, value_name = "FIELDS")]
    pub group_by: Option<String>,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// An empty folder to mount on
    #[arg(value_name = "DIR")]
    pub mountpoint: PathBuf,
    /// Let other users (and root) read the mount; needs root or user_allow_other in
    /// /etc/fuse.conf. Permissions recorded in the points still apply.
    #[arg(long)]
    pub allow_other: bool,
    /// MiB of file data kept in memory
    #[arg(long, value_name = "MIB", default_value = "256")]
    pub cache_size: Option<usize>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Recovery point: ID, ID prefix or "latest", optionally with :PATH inside it
    /// (with --at: just :PATH, or nothing)
    #[arg(value_name = "ID[:PATH]")]
    pub snapshot: Option<String>,
    #[command(flatten)]
    pub at: AtArgs,
    /// Folder to restore into (created if missing)
    #[arg(long, short = 't', value_name = "DIR")]
    pub target: PathBuf,
    /// Existing files: always rewrite, rewrite if-changed (size or mtime), or never touch
    #[arg(long, default_value = "if-changed", value_parser = ["always", "if-changed", "never"])]
    pub overwrite: String,
    /// Delete files in the target that the recovery point does not have
    #[arg(long)]
    pub delete: bool,
    /// Restore only paths matching this pattern (repeatable)
    #[arg(long = "include", short = 'i', value_name = "PATTERN")]
    pub includes: Vec<String>,
    /// Do not restore paths matching this pattern (repeatable)
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Set owners by uid/gid only, ignoring recorded user and group names
    #[arg(long)]
    pub numeric_owner: bool,
    /// Read every restored file back and check it against the repository
    #[arg(long)]
    pub verify: bool,
    /// Do not recreate what grants privileges: setuid/setgid bits, device nodes, and the
    /// security.capability and trusted.* extended attributes (for a recovery point that another,
    /// possibly compromised, host wrote)
    #[arg(long)]
    pub no_privileged: bool,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Recovery point: ID, ID prefix or "latest", optionally with :PATH inside it
    #[arg(value_name = "ID[:PATH]")]
    pub snapshot: Option<String>,
    #[command(flatten)]
    pub at: AtArgs,
    /// Long listing: mode, owner, size, time
    #[arg(short = 'l', long)]
    pub long: bool,
    /// List everything below the path, not just its entries
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    /// config | snapshot ID | tree ID-or-ID:PATH | index | keys
    #[arg(value_name = "WHAT")]
    pub what: String,
    #[arg(value_name = "ID")]
    pub id: Option<String>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Read, decrypt and verify every byte of every pack
    #[arg(long)]
    pub read_data: bool,
    /// Read only part of the data: N/M (the N-th of M fixed parts: 1/7 … 7/7 cover it all),
    /// a percentage (10%, packs picked at random) or a size (2GiB)
    #[arg(long, value_name = "N/M|P%|SIZE")]
    pub read_data_subset: Option<String>,
    /// Read the next slice of data after the one the last scrub read (a seventh of the data,
    /// or the size --read-data-subset gives), so that a daily scrub covers everything in a week
    #[arg(long)]
    pub scrub: bool,
    /// Compare every location of a multi-location repository: object lists and content hashes
    #[arg(long)]
    pub locations: bool,
    /// Heal what the check finds: with --locations, copy good copies over missing or damaged
    /// ones; with parity, rebuild damaged packs from their groups
    #[arg(long)]
    pub repair: bool,
}
