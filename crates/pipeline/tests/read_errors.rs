//! What the sinks do when reading the log fails, by the kind of failure: a
//! log that is away is waited for, a closed log stops them cleanly, a
//! deleted position is read past with a new consumer, and what waiting does
//! not mend ends them with the error at once. The log here is scripted:
//! each consumer it hands out returns the steps it was given, then waits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_archive::{Archive, ArchiveConfig};
use tributary_log::{Batch, ReadToEnd, Record, Stream, StreamConsumer, StreamError};
use tributary_pipeline::{
    archive, reprocess, run, ArchiveStats, Error, Finish, FlushPolicy, MotionRows, Stats,
};
use tributary_store::Store;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Longer than any test here may take: a failure that is retried until
/// the patience runs out shows as a timeout.
const PATIENCE: Duration = Duration::from_secs(60);
const BOUND: Duration = Duration::from_secs(10);

enum Step {
    Records(usize),
    Fail(fn(tributary_log::BoxError) -> StreamError),
}

/// Hands out one scripted consumer per `consumer` call, in order.
struct Scripted {
    scripts: Mutex<VecDeque<Vec<Step>>>,
    opened: AtomicUsize,
}

impl Scripted {
    fn new(scripts: Vec<Vec<Step>>) -> Scripted {
        Scripted {
            scripts: Mutex::new(scripts.into()),
            opened: AtomicUsize::new(0),
        }
    }
}

struct ScriptedConsumer {
    steps: VecDeque<Step>,
    read: u64,
}

impl Stream for Scripted {
    type Position = u64;
    type Consumer = ScriptedConsumer;

    async fn append_all(&self, _records: Vec<Record>) -> Result<(), StreamError> {
        Ok(())
    }

    fn consumer(&self, _name: &str) -> Result<ScriptedConsumer, StreamError> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        let steps = self
            .scripts
            .lock()
            .expect("scripts")
            .pop_front()
            .unwrap_or_default();
        Ok(ScriptedConsumer {
            steps: steps.into(),
            read: 0,
        })
    }
}

impl StreamConsumer for ScriptedConsumer {
    type Position = u64;

    async fn next(&mut self, _max: usize) -> Result<Batch<u64>, StreamError> {
        match self.steps.pop_front() {
            Some(Step::Records(n)) => {
                let first = self.read;
                self.read += n as u64;
                Ok((first..self.read)
                    // Anonymous: no measurement, just a record read.
                    .map(|i| (i, Arc::new(Record::default())))
                    .collect())
            }
            Some(Step::Fail(kind)) => Err(kind("scripted failure".into())),
            None => std::future::pending().await,
        }
    }

    async fn commit(&mut self, _done: &[u64]) -> Result<(), StreamError> {
        Ok(())
    }

    async fn lag(&self) -> Option<u64> {
        None
    }
}

impl ReadToEnd for ScriptedConsumer {
    type End = u64;

    async fn end(&self) -> Result<u64, StreamError> {
        Ok(3)
    }

    fn reached(&self, end: &u64) -> bool {
        self.read >= *end
    }
}

async fn reprocess_script(
    steps: Vec<Step>,
) -> Result<(Result<Finish, Error>, Stats), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(None, dir.path()).await?;
    let mut reader = Scripted::new(vec![steps]).consumer("reprocess")?;
    let end = reader.end().await?;
    let stats = Stats::default();
    let stop = CancellationToken::new();
    let result = tokio::time::timeout(
        BOUND,
        reprocess(
            &mut reader,
            &end,
            &store,
            MotionRows::Store,
            &stats,
            &stop,
            PATIENCE,
        ),
    )
    .await?;
    Ok((result, stats))
}

#[tokio::test]
async fn reprocessing_waits_for_a_log_that_is_away() -> TestResult {
    let (result, stats) =
        reprocess_script(vec![Step::Fail(StreamError::Unavailable), Step::Records(3)]).await?;
    assert_eq!(result?, Finish::Complete);
    assert_eq!(stats.records.load(Ordering::Relaxed), 3);
    Ok(())
}

#[tokio::test]
async fn reprocessing_a_closed_log_is_interrupted_at_once() -> TestResult {
    let (result, stats) =
        reprocess_script(vec![Step::Records(1), Step::Fail(StreamError::Closed)]).await?;
    assert_eq!(result?, Finish::Interrupted);
    assert_eq!(stats.records.load(Ordering::Relaxed), 1);
    Ok(())
}

#[tokio::test]
async fn reprocessing_fails_at_once_on_what_waiting_does_not_mend() -> TestResult {
    for kind in [
        StreamError::Storage,
        StreamError::Invalid,
        // Records deleted before they were read: the run cannot be complete.
        StreamError::PositionGone,
    ] {
        let (result, _) = reprocess_script(vec![Step::Fail(kind)]).await?;
        match result {
            Err(Error::Read(e)) => assert!(!e.is_retryable(), "{e:?}"),
            other => panic!("expected a read error, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_pipeline_goes_on_with_a_new_consumer_when_its_position_is_gone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(None, dir.path()).await?;
    let stream = Scripted::new(vec![
        vec![Step::Fail(StreamError::PositionGone)],
        vec![Step::Records(3)],
    ]);
    let stats = Stats::default();
    let stop = CancellationToken::new();
    let watcher = async {
        let deadline = tokio::time::Instant::now() + BOUND;
        while stats.records.load(Ordering::Relaxed) < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    };
    let (result, ()) = tokio::join!(
        run(
            &stream,
            &store,
            "pipeline",
            MotionRows::Store,
            &stats,
            stop.clone()
        ),
        watcher
    );
    result?;
    assert_eq!(stats.records.load(Ordering::Relaxed), 3);
    assert_eq!(stream.opened.load(Ordering::SeqCst), 2);
    Ok(())
}

/// Runs the pipeline on one scripted consumer, never cancelled: only what
/// the log does ends it (bounded).
async fn run_script(
    steps: Vec<Step>,
) -> Result<(Result<(), Error>, Stats), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(None, dir.path()).await?;
    let stream = Scripted::new(vec![steps]);
    let stats = Stats::default();
    let stop = CancellationToken::new();
    let result = tokio::time::timeout(
        BOUND,
        run(&stream, &store, "pipeline", MotionRows::Store, &stats, stop),
    )
    .await?;
    Ok((result, stats))
}

#[tokio::test]
async fn the_pipeline_stops_cleanly_when_the_log_closes() -> TestResult {
    let (result, stats) =
        run_script(vec![Step::Records(2), Step::Fail(StreamError::Closed)]).await?;
    result?;
    assert_eq!(stats.records.load(Ordering::Relaxed), 2);
    Ok(())
}

#[tokio::test]
async fn the_pipeline_stops_with_the_error_when_the_log_storage_fails() -> TestResult {
    let (result, _) = run_script(vec![Step::Fail(StreamError::Storage)]).await?;
    assert!(
        matches!(result, Err(Error::Read(StreamError::Storage(_)))),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_archive_sink_stops_cleanly_on_a_closed_log_and_with_the_error_on_an_invalid_read(
) -> TestResult {
    let dir = tempfile::tempdir()?;
    let archive_ = Archive::open(&ArchiveConfig::default(), dir.path())?;
    let stats = ArchiveStats::default();
    let closed = Scripted::new(vec![vec![Step::Fail(StreamError::Closed)]]);
    let stop = CancellationToken::new();
    let sink = archive(
        &closed,
        &archive_,
        "archive",
        FlushPolicy::default(),
        &stats,
        stop.clone(),
    );
    tokio::time::timeout(BOUND, sink).await??;

    let broken = Scripted::new(vec![vec![Step::Fail(StreamError::Invalid)]]);
    let sink = archive(
        &broken,
        &archive_,
        "archive",
        FlushPolicy::default(),
        &stats,
        stop,
    );
    let result = tokio::time::timeout(BOUND, sink).await?;
    assert!(
        matches!(result, Err(Error::Read(StreamError::Invalid(_)))),
        "{result:?}"
    );
    Ok(())
}
