//! Refs and snapshots: resolving a ref, the files of a snapshot, the writer's hold on
//! the clean-up, publishing a ref's new state in one transaction, and the clean-up of
//! old snapshots and the file versions only they had.

use super::*;

impl PgStore {
    /// The snapshot a ref points at now (read from the replica when there is one), and
    /// remembered for [`PgStore::cached_ref_snapshot`]. The first call checks that the
    /// database holds a schema this ragls reads.
    pub fn ref_snapshot(&self, repo: &str, ref_name: &str) -> Result<Option<Snapshot>> {
        if !self.schema_checked.load(Ordering::Relaxed) {
            self.check_schema()?;
            self.schema_checked.store(true, Ordering::Relaxed);
        }
        let found = self.read(snapshot_on(
            self.reader.clone(),
            self.reader_at.clone(),
            repo.to_string(),
            ref_name.to_string(),
        ))?;
        if let Ok(mut refs) = self.refs.lock() {
            let key = (repo.to_string(), ref_name.to_string());
            match &found {
                Some(s) => refs.insert(key, s.clone()),
                None => refs.remove(&key),
            };
        }
        Ok(found)
    }

    /// The snapshot a ref pointed at when last read, without asking the database (it
    /// asks when there is none). A snapshot never changes, so reading a remembered one
    /// is never a mix; that it is still the ref's is checked by the query that reads it
    /// ([`PgStore::search_snapshot`] says when the ref has moved, and forgets it).
    pub fn cached_ref_snapshot(&self, repo: &str, ref_name: &str) -> Result<Option<Snapshot>> {
        let key = (repo.to_string(), ref_name.to_string());
        let known = self.refs.lock().ok().and_then(|r| r.get(&key).cloned());
        match known {
            Some(s) if !self.is_away() => Ok(Some(s)),
            _ => self.ref_snapshot(repo, ref_name),
        }
    }

    /// Forgets the remembered snapshot of a ref (it has moved).
    pub(super) fn forget_ref(&self, repo: &str, ref_name: &str) {
        if let Ok(mut refs) = self.refs.lock() {
            refs.remove(&(repo.to_string(), ref_name.to_string()));
        }
    }

    /// Every file of a snapshot: path -> its version.
    pub fn snapshot_files(&self, snapshot: i64) -> Result<HashMap<String, SnapshotFile>> {
        self.read(snapshot_files_on(
            self.reader.clone(),
            self.reader_at.clone(),
            snapshot,
        ))
    }

    /// What a writer reads before it looks at the workspace's changes, in one round trip
    /// on the primary (a replica may lag): whether the schema is this ragls's, the hold
    /// on the clean-up (a session-level shared lock, taken first, on the connection the
    /// hold keeps), then, in one read-only transaction, so that they agree, the ref's
    /// snapshot, the named base's, the base's file list and the vector indexes there
    /// are. Sent one after another, they were ten round trips (a statement sent as text
    /// is prepared in one of its own), most of a small update's time before its first
    /// query. A schema that is missing or older is created or migrated
    /// ([`PgStore::migrate`]) and the reads are made again.
    ///
    /// `remembered` is a snapshot whose file list the writer has kept from its last
    /// update ([`Published::stamp`]): when the base is that snapshot, its files are not
    /// read again (476 rows were a tenth of a small update's time on the server).
    pub fn open_update(
        &self,
        repo: &str,
        ref_name: &str,
        base: Option<&str>,
        remembered: Option<SnapshotStamp>,
    ) -> Result<UpdateStart> {
        if let Some(start) = self.try_open_update(repo, ref_name, base, remembered, true)? {
            return Ok(start);
        }
        self.migrate()?;
        self.try_open_update(repo, ref_name, base, remembered, false)?
            .ok_or_else(|| {
                Error::Store(format!(
                    "shared index at {}: the schema could not be read after migrating it",
                    self.primary_at
                ))
            })
    }

    /// [`PgStore::open_update`]'s reads; `None` when `check_schema` finds the schema
    /// missing, older, or not this role's to write (then `migrate` creates it, migrates
    /// it or says why not).
    fn try_open_update(
        &self,
        repo: &str,
        ref_name: &str,
        base: Option<&str>,
        remembered: Option<SnapshotStamp>,
        check_schema: bool,
    ) -> Result<Option<UpdateStart>> {
        let (pool, at) = (self.primary.clone(), self.primary_at.clone());
        let (repo, ref_name) = (repo.to_string(), ref_name.to_string());
        let base = base.map(str::to_string);
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let err = |e: tokio_postgres::Error| db_error(&at, e);
            let prepared = tokio::try_join!(
                client.prepare_cached(schema::WRITABLE_SCHEMA),
                client.prepare_cached("SELECT pg_advisory_lock_shared($1)"),
                client.prepare_cached(REF_SNAPSHOT),
                client.prepare_cached(REF_FILES),
                client.prepare_cached(VECTOR_INDEXES),
            );
            let (schema, lock, snapshot, files, indexes) = match prepared {
                Ok(statements) => statements,
                // No schema yet (its tables are missing): `migrate` makes it.
                Err(_) if check_schema => return Ok(None),
                Err(e) => return Err(err(e)),
            };
            let base_name = base.clone().unwrap_or_else(|| ref_name.clone());
            let (schema, locked, begun, current, named, files, indexes, committed) = tokio::join!(
                async { client.query_one(&schema, &[]).await },
                async { client.execute(&lock, &[&GARBAGE_LOCK]).await },
                client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
                async { client.query_opt(&snapshot, &[&repo, &ref_name]).await },
                async {
                    match &base {
                        Some(b) => client.query_opt(&snapshot, &[&repo, b]).await.map(Some),
                        None => Ok(None),
                    }
                },
                async {
                    let (id, micros) = (remembered.map(|r| r.id), remembered.map(|r| r.micros));
                    client
                        .query(&files, &[&repo, &base_name, &id, &micros])
                        .await
                },
                async { client.query_one(&indexes, &[]).await },
                client.batch_execute("COMMIT"),
            );
            // Locked, the connection is the hold's from here: should anything below
            // fail, dropping it closes the connection, and the lock goes with it.
            let locked = locked.map(|_| CleanupHold(Some(Arc::new(HeldConnection(Some(client))))));
            if check_schema {
                let current = schema.as_ref().is_ok_and(|row| {
                    schema::schema_is_current_and_writable(row.get(0), row.get(1))
                });
                if !current {
                    return Ok(None);
                }
            }
            let hold = locked.map_err(err)?;
            begun.map_err(err)?;
            let (current, named) = (current.map_err(err)?, named.map_err(err)?);
            // The base's file list was left out when the base is the remembered snapshot.
            let base_row = match &named {
                Some(row) => row.as_ref(),
                None => current.as_ref(),
            };
            let base_is_remembered =
                remembered.is_some() && base_row.map(stamp_of_row) == remembered;
            let files = files.map_err(err)?;
            let base_files =
                (!base_is_remembered).then(|| files.iter().map(snapshot_file_of_row).collect());
            let current = current.as_ref().map(snapshot_of_row);
            let named_base = named.map(|row| row.as_ref().map(snapshot_of_row));
            let vector_indexes = indexes.map_err(err)?.get(0);
            committed.map_err(err)?;
            Ok(Some(UpdateStart {
                hold,
                current,
                named_base,
                base_files,
                vector_indexes,
            }))
        })
    }

    /// Begins a ref's update while its last file versions are being written: on the
    /// hold's connection (see [`CleanupHold`]), once the update's vectors are stored,
    /// its transaction opens, locks the ref, makes the new snapshot and lists in it the
    /// base's files that stay: none when it lists only changes ([`new_list`]), the
    /// changes of the base it carries when the base lists changes too, else every file
    /// the base has but the replaced ones. [`OpenPublish::finish`] adds the changed files and
    /// switches the ref in the same transaction; an update dropped unfinished rolls it
    /// back. Measured on 1% updates of the performance corpus, the publish took 3.5 ms
    /// after the update's last write instead of 7.8 (medians of 40); the update as a
    /// whole, on two cores that the server shares with the writer, no less: there the
    /// work moves rather than shrinks. With the server on a machine of its own, it runs
    /// beside the writer's.
    pub fn begin_publish(&self, start: RefUpdateStart<'_>) -> Result<OpenPublish> {
        let (pool, at) = (self.primary.clone(), self.primary_at.clone());
        let mut hold = start.hold;
        let held = hold.0.take();
        let vectors = start.vectors;
        let begun = Begun {
            repo: start.repo.to_string(),
            ref_name: start.ref_name.to_string(),
            identity: start.identity.clone(),
            base: start.base.map(|b| b.id),
            list: new_list(start.base, start.base_files, start.replaced.len()),
            replaced: start.replaced,
        };
        let (rest, rest_rx) = tokio::sync::oneshot::channel();
        let task = runtime()?.spawn(async move {
            // The vectors first: some may be stored on the hold's connection, and the
            // transaction must not take them in (they are kept whatever becomes of it).
            vectors.finish().await?;
            // Its other users are done now; should one not be, the publish takes a
            // connection of its own (the hold goes when that user lets it go).
            let mut client = match held.map(Arc::try_unwrap) {
                Some(Ok(mut held)) => held.0.take(),
                _ => None,
            };
            let mut client = match client.take() {
                Some(client) => client,
                None => pool.get().await.map_err(|e| db_error(&at, e))?,
            };
            let outcome = begun.publish(&mut client, &at, rest_rx).await;
            if !matches!(outcome, Ok((_, true))) {
                // It may have stopped inside its transaction, or kept the hold: the
                // connection is closed, not given back to the pool open.
                drop(deadpool_postgres::Object::take(client));
            }
            outcome.map(|(published, _)| published)
        });
        Ok(OpenPublish {
            rest: Some(rest),
            task: Some(task),
        })
    }
}

/// A ref's update begun by [`PgStore::begin_publish`]: its transaction open.
pub struct OpenPublish {
    rest: Option<tokio::sync::oneshot::Sender<RefUpdate>>,
    task: Option<tokio::task::JoinHandle<Result<Published>>>,
}

impl OpenPublish {
    /// Lists the changed files in the new snapshot and switches the ref to it, once
    /// the update's vectors are in the embedding cache (they are stored on a
    /// connection and in a transaction of their own), then commits.
    pub fn finish(mut self, update: RefUpdate) -> Result<Published> {
        let (Some(rest), Some(task)) = (self.rest.take(), self.task.take()) else {
            return Err(Error::Other("a ref's update was finished twice".into()));
        };
        // Refused when the transaction failed already: its error is the task's.
        let _ = rest.send(update);
        block(async move {
            task.await.map_err(|e| {
                Error::Other(format!("publishing the ref stopped unexpectedly: {e}"))
            })?
        })
    }
}

impl OpenPublish {
    /// Rolls the transaction back and waits until its connection is let go (and the
    /// update's vectors, which it waited for, are stored): nothing is left writing.
    pub fn abandon(mut self) {
        self.rest.take();
        if let Some(task) = self.task.take() {
            let _ = block(async move {
                let _ = task.await;
                Ok(())
            });
        }
    }
}

impl Drop for OpenPublish {
    fn drop(&mut self) {
        // Unfinished: the task hears the update is gone and rolls back (it closes its
        // connection). Not waited for.
        self.rest.take();
    }
}

/// A ref's update from its beginning ([`PgStore::begin_publish`]).
struct Begun {
    repo: String,
    ref_name: String,
    identity: Identity,
    base: Option<i64>,
    list: NewList,
    replaced: Vec<String>,
}

/// How a publish lists its new snapshot's files ([`new_list`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NewList {
    /// Every file: the base's that stay and the changed ones. `resolved`: the base
    /// lists changes, and its list is resolved against its own base.
    Full { resolved: bool },
    /// Only the changes since the full list `base`: the update's, and, `carried`, those
    /// of the update's base that stay (it lists changes of the same full list).
    Changes { base: i64, carried: bool },
}

/// A snapshot lists only its changes while they are at most a tenth of its files, or
/// this many rows whatever its size: a question reads a full list and the changes
/// (more than a tenth and it reads much more than the snapshot has), and an update
/// writes the changes since the last full list (more and it might as well write all).
const CHANGES_ALWAYS_LISTED: usize = 32;

/// How an update from `base` (with `base_files` files) that replaces `replaced` of its
/// paths lists its files: its changes alone while those since the last full list stay
/// within bounds ([`CHANGES_ALWAYS_LISTED`]), else every file (and the next updates list
/// their changes from that list: a base is never a list of changes itself).
fn new_list(base: Option<&Snapshot>, base_files: usize, replaced: usize) -> NewList {
    let Some(base) = base else {
        return NewList::Full { resolved: false };
    };
    let (full, carried) = match base.list {
        FileList::Full => (base.id, 0),
        FileList::Changes { base, rows, .. } => (base, rows.max(0) as usize),
    };
    let listed_changes = matches!(base.list, FileList::Changes { .. });
    if carried + replaced <= (base_files / 10).max(CHANGES_ALWAYS_LISTED) {
        NewList::Changes {
            base: full,
            carried: listed_changes,
        }
    } else {
        NewList::Full {
            resolved: listed_changes,
        }
    }
}

impl Begun {
    /// The whole publish on its connection: the transaction's first part at once, the
    /// rest once `rest` brings it (and a roll-back, by an error, when it never does),
    /// then the clean-up when one is due and, after a large change, fresh statistics.
    /// With the publish, whether the connection may go back to the pool (false: the
    /// hold on the clean-up could not be let go).
    async fn publish(
        self,
        client: &mut deadpool_postgres::Object,
        at: &str,
        rest: tokio::sync::oneshot::Receiver<RefUpdate>,
    ) -> Result<(Published, bool)> {
        let err = |e: tokio_postgres::Error| db_error(at, e);
        // Every statement is prepared up front, all in one round trip: sent as text,
        // each was prepared in a round trip of its own.
        let stats_sql = match self.base {
            Some(_) => STATS_FROM_BASE,
            None => STATS_FROM_SCRATCH,
        };
        let kept_sql = match self.list {
            NewList::Full { resolved: true } => BASE_FILES_KEPT,
            _ => BASE_ROWS_KEPT,
        };
        let statements = tokio::try_join!(
            client.prepare_cached(LOCK_REF),
            client.prepare_cached(OPEN_SNAPSHOT),
            client.prepare_cached("SELECT 1 FROM snapshots WHERE id = $1"),
            client.prepare_cached(kept_sql),
            client.prepare_cached("SELECT count(*) FROM blobs WHERE id = ANY($1::bigint[])"),
            client.prepare_cached(CHANGED_FILES),
            client.prepare_cached(stats_sql),
            client.prepare_cached(POINT_REF),
            client.prepare_cached(GARBAGE_DUE),
            client.prepare_cached(RELEASE_HOLD),
        )
        .map_err(err)?;
        let opened = self.open(client, at, &statements).await?;
        let Ok(update) = rest.await else {
            return Err(Error::Other(
                "the update stopped before its ref was switched".into(),
            ));
        };
        let chunks_added = update.chunks_added;
        let (snapshot, repo_id, total, garbage_due, released) =
            self.switch(client, at, &statements, opened, update).await?;
        if garbage_due && released {
            collect_garbage(client, repo_id).await.map_err(err)?;
        }
        // A first build (or a large change) leaves the planner's statistics far off
        // until autovacuum comes by: refresh them now (best effort). VACUUM too, for
        // the visibility map: without it the searches read the file lists and the
        // chunks through the heap (bitmap heap scans) instead of from their covering
        // indexes alone (BM25, when its postings were covered too, measured 9.4 ms
        // against 2.1 ms for terms matching 3,000 postings on the performance
        // corpus). VACUUM cannot share a statement batch
        // (an implicit transaction): one each. It marks no page all-visible while
        // another transaction's snapshot predates the publish (autovacuum analyzing
        // the new rows, measured to happen right after a first build): then it is
        // run again, for two seconds at most, until most pages are.
        if chunks_added * 10 > total as u64 {
            let mut pending = vec!["postings", "chunks", "snapshot_files"];
            for round in 0..20 {
                if round > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let mut again = Vec::new();
                for table in pending {
                    if client
                        .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
                        .await
                        .is_err()
                    {
                        continue;
                    }
                    let visible: f64 = client
                        .query_one(
                            "SELECT relallvisible::float8 / greatest(relpages, 1) FROM pg_class WHERE oid = $1::text::regclass",
                            &[&table],
                        )
                        .await
                        .map(|r| r.get(0))
                        .unwrap_or(1.0);
                    if visible < 0.9 {
                        again.push(table);
                    }
                }
                pending = again;
                if pending.is_empty() {
                    break;
                }
            }
            let _ = client
                .batch_execute("ANALYZE blobs; ANALYZE embeddings;")
                .await;
        }
        Ok((
            Published {
                snapshot: snapshot.id,
                stamp: snapshot,
            },
            released,
        ))
    }

    /// The transaction's first part, in one round trip (each statement reads once the
    /// locks are held; the new snapshot's id is the sequence's `currval`): the locks,
    /// the new snapshot, and the base's files that stay listed in it. Returns the new
    /// snapshot's id, its repository's and its creation time in microseconds.
    async fn open(
        &self,
        client: &tokio_postgres::Client,
        at: &str,
        statements: &PublishStatements,
    ) -> Result<(i64, i64, i64)> {
        let (lock, open, base_kept, kept_files, ..) = statements;
        let dimensions = self.identity.dimensions as i32;
        let (list_base, copies) = match self.list {
            NewList::Full { .. } => (None, true),
            NewList::Changes { base, carried } => (Some(base), carried),
        };
        // One writer per ref at a time; other refs update side by side. The shared lock
        // keeps the clean-up of old snapshots out while any ref is written (see
        // `collect_garbage`): what this update takes from the base, and the file
        // versions it lists, stay until it commits.
        let (begun, locked, opened, base_kept, listed) = tokio::join!(
            client.batch_execute("BEGIN"),
            async {
                client
                    .execute(lock, &[&self.repo, &self.ref_name, &GARBAGE_LOCK])
                    .await
            },
            async {
                client
                    .query_one(
                        open,
                        &[&self.repo, &self.identity.embedder, &dimensions, &list_base],
                    )
                    .await
            },
            async {
                match self.base {
                    Some(b) => client
                        .query_opt(base_kept, &[&b])
                        .await
                        .map(|r| r.is_some()),
                    None => Ok(true),
                }
            },
            async {
                match self.base {
                    Some(b) if copies => client.execute(kept_files, &[&b, &self.replaced]).await,
                    _ => Ok(0),
                }
            },
        );
        // Every statement answered; their errors in the order sent: in a transaction a
        // failed statement fails every later one ("transaction is aborted"), and the
        // first says why.
        let failed = |e: tokio_postgres::Error| db_error(at, e);
        begun.map_err(failed)?;
        locked.map_err(failed)?;
        let opened = opened.map_err(failed)?;
        // The base outlives this transaction (the clean-up waits for the shared lock),
        // unless a clean-up removed it before: then start over.
        if !base_kept.map_err(failed)? {
            return Err(Error::Usage(format!(
                "the state {} was updated from is gone (another writer moved it meanwhile); run `ragls index` again",
                self.ref_name
            )));
        }
        listed.map_err(failed)?;
        Ok((opened.get(0), opened.get(1), opened.get(2)))
    }

    /// The transaction's second part, once the file versions are written: the changed
    /// files listed, the statistics, the ref switched (one round trip), then, once the
    /// vectors are stored, the commit, with the hold on the clean-up let go after it
    /// and the question whether a clean-up is due. Returns the new snapshot's stamp,
    /// its repository's id, its chunk count, whether a clean-up is due and whether the
    /// hold was let go.
    async fn switch(
        &self,
        client: &tokio_postgres::Client,
        at: &str,
        statements: &PublishStatements,
        (snapshot, repo_id, micros): (i64, i64, i64),
        update: RefUpdate,
    ) -> Result<(SnapshotStamp, i64, i64, bool, bool)> {
        let (_, _, _, _, versions_kept, changed_files, stats, point, garbage_due, release) =
            statements;
        let RefUpdate {
            dropped, changed, ..
        } = update;
        let (mut paths, blob_ids): (Vec<String>, Vec<i64>) = changed.into_iter().unzip();
        let mut listed_ids: Vec<Option<i64>> = blob_ids.iter().copied().map(Some).collect();
        // A list of changes names each removed file, without a version: its base's row
        // of that path is no longer the snapshot's.
        if let NewList::Changes { .. } = self.list {
            let changed: std::collections::HashSet<&String> = paths.iter().collect();
            let removed: Vec<String> = dropped
                .iter()
                .filter(|p| !changed.contains(p))
                .cloned()
                .collect();
            listed_ids.extend(removed.iter().map(|_| None));
            paths.extend(removed);
        }
        let mut distinct = blob_ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let (versions_kept, listed, total, pointed, list_postings) = tokio::join!(
            async {
                match distinct.is_empty() {
                    true => Ok(0),
                    false => client
                        .query_one(versions_kept, &[&distinct])
                        .await
                        .map(|r| r.get::<_, i64>(0) as usize),
                }
            },
            async {
                client
                    .execute(changed_files, &[&snapshot, &paths, &listed_ids])
                    .await
            },
            async {
                match self.base {
                    Some(base) => client.query_one(stats, &[&base, &dropped, &blob_ids]).await,
                    None => client.query_one(stats, &[]).await,
                }
            },
            async { client.execute(point, &[&self.ref_name]).await },
            // Last: it reads the files listed above. A list of changes has none: its
            // readers read its base's (and the statement is not even prepared: a writer's
            // connections are new each run, and preparing costs the server a parse).
            async {
                if let NewList::Full { .. } = self.list {
                    let list_postings = client.prepare(LIST_POSTINGS).await?;
                    client
                        .batch_execute("SET LOCAL enable_nestloop = off")
                        .await?;
                    client.execute(&list_postings, &[&snapshot]).await?;
                    client.batch_execute("RESET enable_nestloop").await?;
                }
                Ok(())
            },
        );
        let failed = |e: tokio_postgres::Error| db_error(at, e);
        // The file versions listed outlive this transaction too, if a clean-up did not
        // remove them before it began (one no snapshot had for an hour).
        if versions_kept.map_err(failed)? < distinct.len() {
            return Err(Error::Usage(format!(
                "file versions this update of {} lists were removed meanwhile (another writer's clean-up); run `ragls index` again",
                self.ref_name
            )));
        }
        listed.map_err(failed)?;
        let total: i64 = total.map_err(failed)?.get(0);
        pointed.map_err(failed)?;
        list_postings.map_err(failed)?;
        fault_pause_in_publish().await;
        // The hold is let go right after the commit, in the same round trip (this
        // writer's own hold would keep its clean-up out), and whether a clean-up is due
        // is asked after that.
        let (committed, released, due) = tokio::join!(
            client.batch_execute("COMMIT"),
            async { client.execute(release, &[&GARBAGE_LOCK]).await },
            async { client.query_one(garbage_due, &[&repo_id]).await },
        );
        committed.map_err(failed)?;
        let due = due.map(|r| r.get::<_, bool>(0)).unwrap_or(false);
        Ok((
            SnapshotStamp {
                id: snapshot,
                micros,
            },
            repo_id,
            total,
            due,
            released.is_ok(),
        ))
    }
}

/// The statements of a publish, prepared on its connection (in `Begun::publish`'s order).
type PublishStatements = (
    tokio_postgres::Statement,
    tokio_postgres::Statement,
    tokio_postgres::Statement,
    tokio_postgres::Statement,
    tokio_postgres::Statement,
    tokio_postgres::Statement,
    tokio_postgres::Statement,
    tokio_postgres::Statement,
    tokio_postgres::Statement,
    tokio_postgres::Statement,
);

/// What a writer reads before it looks at the workspace's changes ([`PgStore::open_update`]).
pub struct UpdateStart {
    /// Keeps the clean-up from removing what the update reads, reuses and writes.
    pub hold: CleanupHold,
    /// The ref's snapshot now (`None`: a first build).
    pub current: Option<Snapshot>,
    /// The named base's snapshot (`None`: none was named; `Some(None)`: there is no
    /// such ref).
    pub named_base: Option<Option<Snapshot>>,
    /// The files of the base's snapshot (the named base's, else the ref's own); `None`
    /// when the base is the snapshot the writer remembered (its files were not read).
    pub base_files: Option<HashMap<String, SnapshotFile>>,
    /// The names of the HNSW indexes there are ([`UpdateStart::has_vector_index`]).
    pub vector_indexes: Vec<String>,
}

impl UpdateStart {
    /// Whether vectors of `dimensions` had their HNSW index when the update began.
    pub fn has_vector_index(&self, dimensions: usize) -> bool {
        self.vector_indexes
            .contains(&super::schema::vector_index_name(dimensions))
    }
}

/// A ref's snapshot by repository and ref name: its id, embedder, dimensions, creation
/// time in microseconds, and the base whose changes it lists, with how many rows, the
/// base's file versions of the paths it lists and its own rows that name a version, as
/// paths and versions in path order (see [`FileList`]).
const REF_SNAPSHOT: &str =
    "SELECT s.id, s.embedder, s.dimensions, (extract(epoch FROM s.created_at) * 1000000)::bigint,
            s.base_id, l.rows, l.replaced, l.paths, l.versions, v.srcs, v.sharers, v.uptos
     FROM refs r JOIN repos p ON p.id = r.repo_id
     JOIN snapshots s ON s.id = r.snapshot_id
     -- The snapshot's own rows, read once (none for a full list: its rows are not needed).
     CROSS JOIN LATERAL (
       SELECT count(*) AS rows,
              coalesce(array_agg(b.blob_id) FILTER (WHERE b.snapshot_id IS NOT NULL), '{}') AS replaced,
              coalesce(array_agg(o.path ORDER BY o.path) FILTER (WHERE o.blob_id IS NOT NULL), '{}') AS paths,
              coalesce(array_agg(o.blob_id ORDER BY o.path) FILTER (WHERE o.blob_id IS NOT NULL), '{}') AS versions
       FROM snapshot_files o
       LEFT JOIN snapshot_files b ON b.snapshot_id = s.base_id AND b.path = o.path
       WHERE o.snapshot_id = s.id AND s.base_id IS NOT NULL) l
     -- What its own versions share (schema 12).
     CROSS JOIN LATERAL (
       SELECT array_agg(v.src ORDER BY v.src, v.blob_id) AS srcs,
              array_agg(v.blob_id ORDER BY v.src, v.blob_id) AS sharers,
              array_agg(v.upto ORDER BY v.src, v.blob_id) AS uptos
       FROM version_sources v WHERE v.blob_id = ANY(l.versions)) v
     WHERE p.name = $1 AND r.name = $2";

/// The files of a ref's snapshot, by repository and ref name; none when that snapshot is
/// the one stamped ($3 id, $4 creation time in microseconds), whose files the writer has.
/// The stamp is checked first, in a CTE of its own: joined with the files, the planner
/// listed every file and checked the stamp on each (on the performance corpus 0.9-1.2
/// ms for an answer of no rows, against 0.06-0.1; 1.7 against 0.7 for the whole list).
const REF_FILES: &str = concat!(
    "WITH s AS MATERIALIZED (
       SELECT s.id FROM refs r JOIN repos p ON p.id = r.repo_id JOIN snapshots s ON s.id = r.snapshot_id
       WHERE p.name = $1 AND r.name = $2
         AND (s.id, (extract(epoch FROM s.created_at) * 1000000)::bigint) IS DISTINCT FROM ($3::bigint, $4::bigint))
     SELECT sf.path, b.content_hash, b.id, b.skip_reason IS NOT NULL
     FROM s CROSS JOIN LATERAL (",
    files_of!("s.id"),
    ") sf JOIN blobs b ON b.id = sf.blob_id"
);

/// The HNSW indexes of the embedding cache there are (one per vector dimension).
const VECTOR_INDEXES: &str = "SELECT coalesce(array_agg(c.relname::text), '{}') FROM pg_class c
     WHERE c.relkind = 'i' AND c.relname LIKE 'embeddings\\_hnsw\\_%' AND pg_table_is_visible(c.oid)";

/// A writer's hold on the clean-up of old snapshots and unlisted file versions: what it
/// reads, reuses and writes ahead of its publish stays, however long it embeds. A
/// session-level shared lock on a connection of its own ([`PgStore::open_update`]); the
/// publish's transaction runs on that connection ([`PgStore::begin_publish`]) and lets
/// the lock go after its commit ([`RELEASE_HOLD`]), so that an update opens one
/// connection fewer (each a server process and an authentication). When the hold is
/// dropped otherwise (or its process dies) the connection is closed and the lock goes
/// with it. Before the publish, the connection also serves the update's lookups and, for
/// a small update, its vectors ([`CleanupHold::connection`]): one connection fewer again.
pub struct CleanupHold(Option<Arc<HeldConnection>>);

impl CleanupHold {
    /// The hold's connection, for statements of the update that are done before its
    /// publish begins (the publish waits for the update's vectors before its `BEGIN`:
    /// nothing else is pipelined into its transaction).
    pub fn connection(&self) -> Option<Via> {
        self.0.clone().map(Via::Held)
    }
}

/// The connection of a [`CleanupHold`]: closed when the last user lets it go, never
/// returned to the pool, so that the session's lock goes with it.
pub struct HeldConnection(Option<deadpool_postgres::Object>);

impl HeldConnection {
    pub(super) fn client(&self) -> &deadpool_postgres::ClientWrapper {
        self.0
            .as_ref()
            .expect("a held connection is taken only by its last user")
    }
}

impl Drop for HeldConnection {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// The locks of a publish: shared against the clean-up ([`GARBAGE_LOCK`]), exclusive
/// per ref.
const LOCK_REF: &str =
    "SELECT pg_advisory_xact_lock_shared($3), pg_advisory_xact_lock(hashtext($1 || ':' || $2))";

/// The repository (made on first use) and the new snapshot: its id, the repository's and
/// its creation time in microseconds (with the id, its [`SnapshotStamp`]).
const OPEN_SNAPSHOT: &str = "WITH r AS (
       INSERT INTO repos(name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id)
     INSERT INTO snapshots(repo_id, embedder, dimensions, base_id) SELECT id, $2, $3, $4 FROM r
     RETURNING id, repo_id, (extract(epoch FROM created_at) * 1000000)::bigint";

/// The statements of a publish after [`OPEN_SNAPSHOT`] are sent with it, before the new
/// snapshot's id is known: they name it `currval('snapshots_id_seq')`.
///
/// The rows of the base ($1) that stay in the new snapshot: all but those of the paths
/// $2 (dropped or changed). A full list's files, or, when both list changes of the same
/// full list, the base's changes (removed files' rows too). In path order, so the
/// primary key grows at its right edge (a new snapshot's keys sort after every other's).
const BASE_ROWS_KEPT: &str = "INSERT INTO snapshot_files(snapshot_id, path, blob_id)
     SELECT currval('snapshots_id_seq'), path, blob_id FROM snapshot_files
     WHERE snapshot_id = $1 AND path NOT IN (SELECT unnest($2::text[]))
     ORDER BY path";

/// The files of the base ($1) that stay in a new full list, the base's list resolved
/// (it lists changes): all but the paths $2.
const BASE_FILES_KEPT: &str = concat!(
    "INSERT INTO snapshot_files(snapshot_id, path, blob_id)
     SELECT currval('snapshots_id_seq'), f.path, f.blob_id FROM (",
    files_of!("$1::bigint"),
    ") f WHERE f.path NOT IN (SELECT unnest($2::text[])) ORDER BY f.path"
);

/// The changed files ($2 paths, $3 their versions; NULL: removed) in the new snapshot $1.
const CHANGED_FILES: &str = "INSERT INTO snapshot_files(snapshot_id, path, blob_id)
     SELECT $1::bigint, p, b FROM unnest($2::text[], $3::bigint[]) AS u(p, b) ORDER BY p";

/// BM25's statistics of the new snapshot from the base's ($1), less the dropped files'
/// ($2) chunks, plus the changed files' ($3) (no pass over the whole snapshot); returns
/// its chunk count.
const STATS_FROM_BASE: &str = "UPDATE snapshots SET (chunk_count, term_total) = (
        SELECT b.chunk_count - d.n + a.n, b.term_total - d.t + a.t
        FROM snapshots b,
             (SELECT count(c.id) AS n, coalesce(sum(c.terms), 0) AS t FROM (
                SELECT sf.blob_id FROM snapshot_files sf WHERE sf.snapshot_id = $1 AND sf.path = ANY($2::text[])
                UNION ALL
                SELECT r.blob_id FROM snapshots s JOIN snapshot_files r ON r.snapshot_id = s.base_id
                WHERE s.id = $1 AND r.path = ANY($2::text[])
                  AND NOT EXISTS (SELECT 1 FROM snapshot_files o WHERE o.snapshot_id = $1 AND o.path = r.path)) sf
              JOIN chunks c ON c.blob_id = sf.blob_id) d,
             (SELECT count(c.id) AS n, coalesce(sum(c.terms), 0) AS t
              FROM unnest($3::bigint[]) AS x(blob_id) JOIN chunks c ON c.blob_id = x.blob_id) a
        WHERE b.id = $1)
     WHERE id = currval('snapshots_id_seq') RETURNING chunk_count";

/// BM25's statistics of a first build, counted; returns its chunk count.
const STATS_FROM_SCRATCH: &str = "UPDATE snapshots SET (chunk_count, term_total) = (SELECT count(*), coalesce(sum(c.terms), 0)
        FROM snapshot_files sf JOIN chunks c ON c.blob_id = sf.blob_id WHERE sf.snapshot_id = currval('snapshots_id_seq'))
     WHERE id = currval('snapshots_id_seq') RETURNING chunk_count";

/// A whole list's postings by term ([`list_postings_of`]), written as it is published: `$1`
/// the new snapshot. Its file list is new, and the planner's statistics may know nothing
/// of it ("1 row"): it is joined by hash (the publish turns nested loops off first), as
/// the postings have no index by file version.
const LIST_POSTINGS: &str = concat!(
    "INSERT INTO snapshot_postings (snapshot_id, term, n, postings) ",
    list_postings_of!("version_postings", "f.snapshot_id = $1")
);

/// Switches the ref named $1 (of the new snapshot's repository) to the new snapshot.
const POINT_REF: &str = "INSERT INTO refs(repo_id, name, snapshot_id)
     SELECT s.repo_id, $1, s.id FROM snapshots s WHERE s.id = currval('snapshots_id_seq')
     ON CONFLICT (repo_id, name) DO UPDATE SET snapshot_id = excluded.snapshot_id, updated_at = now()";

/// Whether snapshot `s` may go (an SQL condition): older than a question can be
/// reading, no ref points at it, and no snapshot that lists changes of it stays (none
/// younger or pointed at; those that go, go in the same clean-up).
macro_rules! snapshot_unused {
    () => {
        "s.created_at < now() - interval '1 hour'
         AND NOT EXISTS (SELECT 1 FROM refs r WHERE r.snapshot_id = s.id)
         AND NOT EXISTS (SELECT 1 FROM snapshots k WHERE k.base_id = s.id
                         AND (k.created_at >= now() - interval '1 hour'
                              OR EXISTS (SELECT 1 FROM refs r WHERE r.snapshot_id = k.id)))"
    };
}

/// Whether the clean-up has anything to remove ([`GARBAGE_FIND`]) for repository $1: asked
/// after every publish, without a transaction or a lock, so that most publishes end there.
const GARBAGE_DUE: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM snapshots s WHERE s.repo_id = $1 AND ",
    snapshot_unused!(),
    ") OR EXISTS (SELECT 1 FROM pending_versions pv WHERE pv.created_at < now() - interval '1 hour')"
);

/// What the clean-up removes, when no writer holds its lock ($2) shared: the
/// repository's ($1) snapshots that may go ([`snapshot_unused`]), and the notes of file
/// versions written over an hour ago (those no snapshot took are removed). Returns both
/// lists' ids, empty when another writer publishes.
const GARBAGE_FIND: &str = concat!(
    "WITH l AS MATERIALIZED (SELECT pg_try_advisory_xact_lock($2) AS ok),
     s AS (DELETE FROM snapshots s USING l WHERE l.ok AND s.repo_id = $1 AND ",
    snapshot_unused!(),
    " RETURNING s.id),
     p AS (DELETE FROM pending_versions pv USING l WHERE l.ok
           AND pv.created_at < now() - interval '1 hour' RETURNING pv.blob_id)
     SELECT ARRAY(SELECT id FROM s), ARRAY(SELECT blob_id FROM p)"
);

/// The snapshot a ref points at, on one pool.
async fn snapshot_on(
    pool: Pool,
    at: String,
    repo: String,
    ref_name: String,
) -> Result<Option<Snapshot>> {
    let db = Db::get(&pool, at).await?;
    let rows = db.query(REF_SNAPSHOT, &[&repo, &ref_name]).await?;
    Ok(rows.first().map(snapshot_of_row))
}

/// A snapshot from a row of [`REF_SNAPSHOT`].
fn snapshot_of_row(r: &tokio_postgres::Row) -> Snapshot {
    Snapshot {
        id: r.get(0),
        identity: Identity {
            embedder: r.get(1),
            dimensions: r.get::<_, i32>(2) as usize,
        },
        list: match r.get::<_, Option<i64>>(4) {
            Some(base) => FileList::Changes {
                base,
                rows: r.get(5),
                replaced: r.get::<_, Option<Vec<i64>>>(6).unwrap_or_default().into(),
                own: r
                    .get::<_, Option<Vec<String>>>(7)
                    .unwrap_or_default()
                    .into_iter()
                    .zip(r.get::<_, Option<Vec<i64>>>(8).unwrap_or_default())
                    .collect(),
                shared: r
                    .get::<_, Option<Vec<i64>>>(9)
                    .unwrap_or_default()
                    .into_iter()
                    .zip(r.get::<_, Option<Vec<i64>>>(10).unwrap_or_default())
                    .zip(r.get::<_, Option<Vec<i32>>>(11).unwrap_or_default())
                    .map(|((src, sharer), upto)| (src, sharer, upto))
                    .collect(),
            },
            None => FileList::Full,
        },
    }
}

/// The stamp of a snapshot from a row of [`REF_SNAPSHOT`].
fn stamp_of_row(r: &tokio_postgres::Row) -> SnapshotStamp {
    SnapshotStamp {
        id: r.get(0),
        micros: r.get(3),
    }
}

/// A file of a snapshot from a row of (path, content hash, blob id, skipped).
fn snapshot_file_of_row(r: &tokio_postgres::Row) -> (String, SnapshotFile) {
    (
        r.get(0),
        SnapshotFile {
            content_hash: hash32(r.get::<_, &[u8]>(1)),
            blob_id: r.get(2),
            skipped: r.get(3),
        },
    )
}

/// A snapshot's files: path -> its version.
async fn snapshot_files_on(
    pool: Pool,
    at: String,
    snapshot: i64,
) -> Result<HashMap<String, SnapshotFile>> {
    let db = Db::get(&pool, at).await?;
    let rows = db
        .query(
            concat!(
                "SELECT sf.path, b.content_hash, b.id, b.skip_reason IS NOT NULL FROM (",
                files_of!("$1::bigint"),
                ") sf JOIN blobs b ON b.id = sf.blob_id"
            ),
            &[&snapshot],
        )
        .await?;
    Ok(rows.iter().map(snapshot_file_of_row).collect())
}

/// The advisory lock between writers (shared, for a publish's whole transaction) and
/// the clean-up of old snapshots (exclusive). It stands in for foreign keys to `blobs`
/// and `snapshots`, whose per-row checks (a row lock on the referenced row for each
/// posting, chunk and file written) were most of the cost of writing a ref.
const GARBAGE_LOCK: i64 = 7261538;

/// Lets a writer's hold on the clean-up go ([`CleanupHold`]), `$1` the [`GARBAGE_LOCK`].
const RELEASE_HOLD: &str = "SELECT pg_advisory_unlock_shared($1)";

/// Removes, in a transaction of its own, the repository's snapshots no ref points at
/// any more and older than any search can still be reading (a reader resolves its
/// snapshot once per question), with their postings by term, then the file versions
/// (with their chunks and postings) that no snapshot has any more. Skipped while another writer publishes
/// (the next writer's turn comes); the embedding cache stays: it is what makes the
/// next branch cheap.
async fn collect_garbage(
    client: &mut deadpool_postgres::Client,
    repo_id: i64,
) -> std::result::Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let find = tx.prepare_cached(GARBAGE_FIND).await?;
    let found = tx.query_one(&find, &[&repo_id, &GARBAGE_LOCK]).await?;
    let (gone, pending): (Vec<i64>, Vec<i64>) = (found.get(0), found.get(1));
    if gone.is_empty() && pending.is_empty() {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM snapshot_postings WHERE snapshot_id = ANY($1::bigint[])",
        &[&gone],
    )
    .await?;
    let blobs: Vec<i64> = tx
        .query(
            "WITH f AS (DELETE FROM snapshot_files WHERE snapshot_id = ANY($1::bigint[]) RETURNING blob_id)
             SELECT blob_id FROM f WHERE blob_id IS NOT NULL UNION SELECT unnest($2::bigint[])",
            &[&gone, &pending],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let blobs: Vec<i64> = tx
        .query(
            "DELETE FROM blobs b WHERE b.id = ANY($1::bigint[])
             AND NOT EXISTS (SELECT 1 FROM snapshot_files sf WHERE sf.blob_id = b.id) RETURNING id",
            &[&blobs],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    // A removed version's postings stay while a version that shares them does (schema
    // 12; its chunks go: the sharer has rows of its own). A sharer names every version
    // whose rows it reads, so the postings a removed version frees are its own and those
    // of the versions it shared with, each gone unless a version or a sharer has them.
    let postings: Vec<i64> = tx
        .query(
            "WITH unshared AS (DELETE FROM version_sources WHERE blob_id = ANY($1::bigint[]) RETURNING src),
                  freed AS (SELECT unnest($1::bigint[]) AS id UNION SELECT src FROM unshared)
             SELECT f.id FROM freed f
             WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = f.id)
               AND NOT EXISTS (SELECT 1 FROM version_sources s WHERE s.src = f.id AND NOT s.blob_id = ANY($1::bigint[]))",
            &[&blobs],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    // No index finds a version's postings (schema 8): one pass over the table, the
    // versions hashed (as `= ANY` of the array, each row would be compared with each).
    tx.execute(
        "DELETE FROM postings WHERE blob_id IN (SELECT unnest($1::bigint[]))",
        &[&postings],
    )
    .await?;
    tx.execute(
        "DELETE FROM chunks WHERE blob_id = ANY($1::bigint[])",
        &[&blobs],
    )
    .await?;
    tx.commit().await
}

/// Fault injection for the tests: `RAGLS_FAULT_PUBLISH_WAIT_FOR=FILE` makes a ref update
/// stop inside its transaction, after writing everything but before switching the ref:
/// it creates `FILE.reached`, then waits until `FILE` exists (a test reads meanwhile, or
/// kills the process). Unset, it costs nothing.
async fn fault_pause_in_publish() {
    let Some(release) = std::env::var_os("RAGLS_FAULT_PUBLISH_WAIT_FOR") else {
        return;
    };
    let release = std::path::PathBuf::from(release);
    let mut reached = release.clone().into_os_string();
    reached.push(".reached");
    let _ = std::fs::write(&reached, b"");
    while !release.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: i64, list: FileList) -> Snapshot {
        Snapshot {
            id,
            identity: Identity {
                embedder: "builtin:hash-v1".into(),
                dimensions: 4,
            },
            list,
        }
    }

    #[test]
    fn a_first_build_lists_every_file() {
        assert_eq!(new_list(None, 0, 500), NewList::Full { resolved: false });
    }

    #[test]
    fn an_update_of_a_full_list_lists_its_changes_while_they_are_few() {
        let full = snapshot(7, FileList::Full);
        // A tenth of 1,000 files, or 32 rows for a smaller repository.
        for (files, replaced) in [(1000, 100), (1000, 1), (40, 32), (3, 3)] {
            assert_eq!(
                new_list(Some(&full), files, replaced),
                NewList::Changes {
                    base: 7,
                    carried: false
                },
                "{replaced} of {files}"
            );
        }
        for (files, replaced) in [(1000, 101), (40, 33)] {
            assert_eq!(
                new_list(Some(&full), files, replaced),
                NewList::Full { resolved: false },
                "{replaced} of {files}"
            );
        }
    }

    #[test]
    fn an_update_of_a_list_of_changes_carries_them_from_the_same_full_list_or_lists_all() {
        let changes = snapshot(
            9,
            FileList::Changes {
                base: 7,
                rows: 90,
                replaced: Arc::from(Vec::new()),
                own: Arc::from(Vec::new()),
                shared: Arc::from(Vec::new()),
            },
        );
        // Never a list of changes of a list of changes: the base is the full one.
        assert_eq!(
            new_list(Some(&changes), 1000, 10),
            NewList::Changes {
                base: 7,
                carried: true
            }
        );
        // The changes carried count towards the bound.
        assert_eq!(
            new_list(Some(&changes), 1000, 11),
            NewList::Full { resolved: true }
        );
    }
}
