//! `sealift sync --daemon`: run the jobs on their schedules, watch the config file and the
//! inbox, answer other sealift commands over the control socket, and stop cleanly.
//!
//! One task owns the schedule. Jobs run as tasks of their own (one run of a job at a time);
//! the inbox is scanned on a blocking thread. File-system events (notify) only wake the loop
//! early: the inbox is also polled, because events can be lost (a full queue, a network
//! filesystem) and because "unchanged for the settle time" is about time passing, not events.
//!
//! Stopping (SIGINT/SIGTERM through the caller's token): no job or import starts after it;
//! running jobs are told through their cancellation token to take no new image and finish
//! the one in flight, whose committed blobs stay under the job's lease for the next run; then
//! the store is flushed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};
use sealift_oci::Digest;
use sealift_store::Store;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::control;
use crate::inbox::{Inbox, InboxError, Ledger, Outcome};
use crate::job::{clients, run_job, RunOptions};

/// Errors that stop the daemon (a failing job or import does not).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config could not be loaded at start (a reload error only logs).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// The inbox folder could not be set up.
    #[error(transparent)]
    Inbox(#[from] InboxError),
    /// File-system watching could not be set up.
    #[error("watching {path}: {source}")]
    Watch {
        /// What was to be watched.
        path: PathBuf,
        /// The cause.
        source: notify::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sealift_store::Error),
}

/// What the daemon needs besides the store.
pub struct DaemonOptions {
    /// The config file, reloaded when it changes.
    pub config_path: PathBuf,
    /// Runs other processes' commands (see [`control`]); `None`: no control socket.
    pub control: Option<control::Handler>,
    /// Cancelled to stop the daemon.
    pub shutdown: CancellationToken,
}

/// Why the loop woke up, besides timers.
enum Wake {
    /// Something changed in the config file's directory.
    Config,
    /// A file was renamed into the inbox.
    RenamedIn(PathBuf),
    /// Something else happened in the inbox.
    Inbox,
}

/// Run until `opts.shutdown` is cancelled.
pub async fn run(store: Arc<Store>, opts: DaemonOptions) -> Result<(), DaemonError> {
    let mut config = Arc::new(Config::load(&opts.config_path)?);
    // One registry client pool for every run, so a [[registry]]'s limits hold over all jobs;
    // rebuilt only when a reload changes the [[registry]] sections.
    let mut pool = Arc::new(clients(&config));
    let stop = opts.shutdown.clone();
    let control_task = match opts.control {
        Some(handler) => {
            let socket = control::socket_path(store.root());
            let token = stop.child_token();
            Some(tokio::spawn(control::serve(socket, handler, token)))
        }
        None => None,
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let config_path = opts.config_path.clone();
    let mut watcher = watcher(tx.clone(), config_path.clone(), None)?;
    let mut inbox = open_inbox(&config, &mut watcher)?;

    // Every job runs once at start; scheduled jobs then again when due.
    let mut due: HashMap<String, SystemTime> = config
        .jobs
        .iter()
        .map(|j| (j.name.clone(), SystemTime::now()))
        .collect();
    let mut running: HashMap<String, CancellationToken> = HashMap::new();
    let mut jobs: JoinSet<(String, bool)> = JoinSet::new();
    let mut imports: JoinSet<Vec<Outcome>> = JoinSet::new();
    let poll = Duration::from_millis(500);

    loop {
        // Start what is due.
        let now = SystemTime::now();
        for job in &config.jobs {
            if running.contains_key(&job.name) || due.get(&job.name).is_none_or(|t| *t > now) {
                continue;
            }
            due.remove(&job.name);
            let token = stop.child_token();
            running.insert(job.name.clone(), token.clone());
            let (store, config, job) = (Arc::clone(&store), Arc::clone(&config), job.clone());
            let pool = Arc::clone(&pool);
            // run_job's future is not Send (higher-ranked borrows inside the copy engine),
            // so each run gets a blocking thread that drives it on this runtime.
            let handle = tokio::runtime::Handle::current();
            jobs.spawn_blocking(move || {
                let opts = RunOptions {
                    cancel: token,
                    clients: Some(pool),
                    ..RunOptions::default()
                };
                let ok = match handle.block_on(run_job(&store, &config, &job, &opts)) {
                    Ok(report) => {
                        tracing::info!(
                            "job {}: {} copied, {} skipped, {} failed, {} refused, {} bytes",
                            job.name,
                            report.copied.len(),
                            report.skipped.len(),
                            report.failed.len(),
                            report.refused.len(),
                            report.bytes
                        );
                        for r in &report.refused {
                            tracing::warn!(
                                "job {}: refused {}: {}",
                                job.name,
                                r.source,
                                r.reason.as_deref().unwrap_or("")
                            );
                        }
                        report.ok()
                    }
                    Err(e) => {
                        tracing::error!("job {}: {e}", job.name);
                        false
                    }
                };
                (job.name.clone(), ok)
            });
        }
        // Scan the inbox (one scan at a time).
        if let Some(ib) = &inbox {
            if imports.is_empty() {
                let (ib, store) = (Arc::clone(ib), Arc::clone(&store));
                imports.spawn_blocking(move || scan_inbox(&ib, &store));
            }
        }

        let next_due = config
            .jobs
            .iter()
            .filter(|j| !running.contains_key(&j.name))
            .filter_map(|j| due.get(&j.name))
            .min()
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(3600));
        let sleep = if inbox.is_some() {
            next_due.min(poll)
        } else {
            next_due
        };

        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(sleep) => {}
            Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                if let Ok((name, _ok)) = done {
                    running.remove(&name);
                    if let Some(job) = config.job(&name) {
                        if let Some(s) = &job.schedule {
                            due.insert(name, s.next_after(SystemTime::now()));
                        }
                    }
                }
            }
            Some(done) = imports.join_next(), if !imports.is_empty() => {
                let outcomes = done.unwrap_or_default();
                let imported = outcomes.iter().any(|o| matches!(o, Outcome::Imported { .. }));
                if let (true, Some(job)) = (imported, config.inbox.as_ref().and_then(|i| i.job.clone())) {
                    due.insert(job, SystemTime::now());
                }
            }
            Some(wake) = rx.recv() => match wake {
                Wake::Config => {
                    // Editors write in several steps: let them finish.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while rx.try_recv().is_ok() {}
                    match Config::load(&config_path) {
                        Ok(new) => {
                            let new = Arc::new(new);
                            for job in &new.jobs {
                                let old = config.job(&job.name);
                                if old.is_none_or(|o| format!("{o:?}") != format!("{job:?}")) {
                                    due.insert(job.name.clone(), SystemTime::now());
                                }
                            }
                            due.retain(|name, _| new.job(name).is_some());
                            let inbox_changed = format!("{:?}", config.inbox) != format!("{:?}", new.inbox);
                            if format!("{:?}", config.registries) != format!("{:?}", new.registries) {
                                pool = Arc::new(clients(&new));
                            }
                            if new.serve != config.serve {
                                // The server was bound at start from the section as it was.
                                tracing::warn!("[serve] changed: restart the daemon to apply it");
                            }
                            config = new;
                            if inbox_changed {
                                inbox = open_inbox(&config, &mut watcher)?;
                            }
                            tracing::info!("reloaded {}", config_path.display());
                        }
                        Err(e) => tracing::error!("not reloading: {e}"),
                    }
                }
                Wake::RenamedIn(path) => {
                    if let Some(ib) = &inbox {
                        ib.lock().expect("inbox lock").renamed_in(&path);
                    }
                }
                Wake::Inbox => {}
            },
        }
    }

    tracing::info!("stopping: waiting for {} running job(s)", running.len());
    for token in running.values() {
        token.cancel();
    }
    while jobs.join_next().await.is_some() {}
    while imports.join_next().await.is_some() {}
    if let Some(task) = control_task {
        if let Ok(Err(e)) = task.await {
            tracing::warn!("{e}");
        }
    }
    store.flush()?;
    Ok(())
}

/// Watch the config file's directory (editors replace the file, so watching the file itself
/// loses it after the first save) and, if given, the inbox.
fn watcher(
    tx: mpsc::UnboundedSender<Wake>,
    config_path: PathBuf,
    inbox: Option<PathBuf>,
) -> Result<notify::RecommendedWatcher, DaemonError> {
    let config_name = config_path.file_name().map(|n| n.to_os_string());
    let config_dir = parent_dir(&config_path);
    let watch_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DaemonError::Watch { path, source }
    };
    let inbox_dir = inbox.clone();
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        for path in &ev.paths {
            if path.file_name().map(|n| n.to_os_string()) == config_name
                && path.parent() == Some(config_dir.as_path())
            {
                let _ = tx.send(Wake::Config);
            } else if inbox_dir
                .as_deref()
                .is_some_and(|d| path.parent() == Some(d))
            {
                let renamed = matches!(
                    ev.kind,
                    EventKind::Modify(notify::event::ModifyKind::Name(
                        notify::event::RenameMode::To | notify::event::RenameMode::Both
                    ))
                );
                let _ = tx.send(if renamed {
                    Wake::RenamedIn(path.clone())
                } else {
                    Wake::Inbox
                });
            }
        }
    })
    .map_err(watch_err(&config_path))?;
    let dir = parent_dir(&config_path);
    w.watch(&dir, RecursiveMode::NonRecursive)
        .map_err(watch_err(&dir))?;
    if let Some(inbox) = &inbox {
        w.watch(inbox, RecursiveMode::NonRecursive)
            .map_err(watch_err(inbox))?;
    }
    Ok(w)
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

type SharedInbox = Arc<Mutex<Inbox>>;

/// Open the config's inbox (if any) and make `watcher` watch it.
fn open_inbox(
    config: &Config,
    watcher: &mut notify::RecommendedWatcher,
) -> Result<Option<SharedInbox>, DaemonError> {
    let Some(section) = &config.inbox else {
        return Ok(None);
    };
    let inbox = Inbox::new(&section.path, section.settle)?;
    watcher
        .watch(inbox.dir(), RecursiveMode::NonRecursive)
        .map_err(|source| DaemonError::Watch {
            path: section.path.clone(),
            source,
        })?;
    tracing::info!("watching inbox {}", section.path.display());
    Ok(Some(Arc::new(Mutex::new(inbox))))
}

/// Import every ready tarball of the inbox.
fn scan_inbox(inbox: &SharedInbox, store: &Store) -> Vec<Outcome> {
    let mut inbox = inbox.lock().expect("inbox lock");
    let ready = match inbox.ready() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("{e}");
            return Vec::new();
        }
    };
    let ledger = StoreLedger(store);
    let mut outcomes = Vec::new();
    for path in ready {
        match inbox.process(store, &ledger, &path) {
            Ok(o) => outcomes.push(o),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    outcomes
}

/// The inbox's record of imported tarballs, kept in the store's metadata.
struct StoreLedger<'a>(&'a Store);

impl Ledger for StoreLedger<'_> {
    fn imported(&self, digest: &Digest) -> Option<String> {
        self.0
            .state_get::<String>(INBOX_NAMESPACE, digest.to_string().as_bytes())
            .ok()
            .flatten()
    }

    fn record(&self, digest: &Digest, note: &str) -> Result<(), sealift_store::Error> {
        self.0.state_put(
            INBOX_NAMESPACE,
            digest.to_string().as_bytes(),
            &note.to_string(),
        )
    }
}

/// The state namespace holding imported tarballs' digests.
const INBOX_NAMESPACE: &str = "inbox";
