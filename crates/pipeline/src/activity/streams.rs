//! Each device's motion stream, from SenML records to activity segments, without I/O.
//!
//! A record is a motion pack when some of its SenML records are named (after the base name's
//! last `/` or `:`) `acc_x` … `gyr_z`. A pack is checked as a whole before any of it is used;
//! what the model cannot read faithfully becomes a dead letter with the reason, never a label:
//!
//! - every sample time carries all six channels, once each, with finite numbers;
//! - units are the documented ones (`m/s2`, `rad/s`; a record without a unit is taken to be in
//!   the documented unit);
//! - samples are 20 ms apart (50 Hz, ±2 ms): a device at 25 Hz or with holes inside a pack is
//!   refused rather than resampled, since its windows would not be the ones the model learnt;
//! - a pack must start after the device's last sample: an out-of-order or repeated pack is
//!   refused (its samples would go back in time inside a window).
//!
//! A pack that starts more than 22 ms after the previous sample opens a new stretch: the
//! windows, the smoothing and the segment start afresh (no window spans a gap).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use tributary_log::Record;
use tributary_model::classify::{labelled_span, Classifier, Segments, Smoother};
use tributary_model::motion::{channel_of, Sample, CHANNELS, SAMPLE_HZ, WINDOW};
use tributary_model::window::{Window, Windower};
use tributary_store::{ActivitySegment, DeadLetter, Row};

use crate::process::dead_letter;
use crate::{process, Outcome};

/// Milliseconds between two samples at the model's rate.
const SAMPLE_MS: i64 = 1000 / SAMPLE_HZ as i64;
/// How far a sample interval may stray from `SAMPLE_MS` (device clocks round to the ms).
const JITTER_MS: i64 = 2;

/// What one log record was for the model.
#[derive(Debug, PartialEq)]
pub enum Added {
    /// No motion in it (or not SenML, or anonymous).
    NotMotion,
    /// Its samples were taken; this many windows completed.
    Samples { windows: usize },
    /// Refused, with the reason, for the owner's dead letters.
    Dead(DeadLetter),
}

/// One device's stream state.
#[derive(Debug)]
struct Stream {
    windower: Windower,
    /// The time of each of the last `WINDOW` samples, by sample index modulo `WINDOW`.
    times: Vec<i64>,
    smoother: Smoother,
    segments: Segments,
    last_ms: Option<i64>,
    touched: Instant,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            windower: Windower::new(),
            times: vec![0; WINDOW],
            smoother: Smoother::default(),
            segments: Segments::default(),
            last_ms: None,
            touched: Instant::now(),
        }
    }
}

type Key = (String, String);

/// Work waiting for the next [`MotionStreams::classify`], in arrival order.
#[derive(Debug)]
enum Pending {
    Window {
        key: Key,
        start_ms: i64,
        window: Window,
    },
    /// A gap: the stream's smoothing starts afresh here.
    Gap(Key),
}

/// Every device's motion stream.
#[derive(Debug)]
pub struct MotionStreams {
    streams: HashMap<Key, Stream>,
    pending: Vec<Pending>,
    model_version: String,
}

impl MotionStreams {
    pub fn new(model_version: String) -> MotionStreams {
        MotionStreams {
            streams: HashMap::new(),
            pending: Vec::new(),
            model_version,
        }
    }

    /// Takes the motion samples of one record.
    pub fn add(&mut self, record: &Record) -> Added {
        let Outcome::Rows(rows) = process(record) else {
            // Not SenML, or invalid SenML: the measurement pipeline dead-letters the latter.
            return Added::NotMotion;
        };
        let samples = match motion_samples(&rows) {
            Ok(None) => return Added::NotMotion,
            Ok(Some(samples)) => samples,
            Err(reason) => return Added::Dead(dead_letter(record, reason)),
        };
        let key = (record.owner.clone(), record.device.clone());
        let stream = self.streams.entry(key.clone()).or_insert_with(Stream::new);
        let first_ms = samples[0].0;
        if let Some(last) = stream.last_ms {
            if first_ms <= last {
                return Added::Dead(dead_letter(
                    record,
                    format!(
                        "motion: the pack starts at {first_ms} ms, not after this device's last sample ({last} ms): out of order or repeated"
                    ),
                ));
            }
            if first_ms - last > SAMPLE_MS + JITTER_MS {
                stream.windower.reset();
                self.pending.push(Pending::Gap(key.clone()));
            }
        }
        stream.touched = Instant::now();
        let mut windows = 0;
        for (time_ms, sample) in samples {
            let index = stream.windower.pushed();
            stream.times[(index % WINDOW as u64) as usize] = time_ms;
            stream.last_ms = Some(time_ms);
            if let Some((first, window)) = stream.windower.push(sample) {
                let start_ms = stream.times[(first % WINDOW as u64) as usize];
                self.pending.push(Pending::Window {
                    key: key.clone(),
                    start_ms,
                    window,
                });
                windows += 1;
            }
        }
        Added::Samples { windows }
    }

    /// Classifies the windows gathered since the last call; returns the segments they made or
    /// extended (the latest state of each), to be upserted.
    pub fn classify(&mut self, classifier: &Classifier) -> Vec<ActivitySegment> {
        let pending = std::mem::take(&mut self.pending);
        let mut out: BTreeMap<(Key, i64), ActivitySegment> = BTreeMap::new();
        for p in pending {
            match p {
                Pending::Gap(key) => {
                    if let Some(s) = self.streams.get_mut(&key) {
                        s.smoother.reset();
                    }
                }
                Pending::Window {
                    key,
                    start_ms,
                    window,
                } => {
                    // A stream forgotten meanwhile (its owner switched the model off) is skipped.
                    let Some(stream) = self.streams.get_mut(&key) else {
                        continue;
                    };
                    let (activity, confidence) =
                        stream.smoother.push(classifier.probabilities(&window));
                    let segment = stream.segments.push(
                        activity,
                        confidence,
                        labelled_span(start_ms, SAMPLE_MS),
                    );
                    out.insert(
                        (key.clone(), segment.start_ms),
                        ActivitySegment {
                            owner: key.0.clone(),
                            device: key.1.clone(),
                            start_ms: segment.start_ms,
                            end_ms: segment.end_ms,
                            activity: segment.activity.name().to_owned(),
                            confidence: f64::from(segment.confidence),
                            windows: segment.windows,
                            model_version: self.model_version.clone(),
                        },
                    );
                }
            }
        }
        out.into_values().collect()
    }

    /// Forgets the streams of these owners (they switched the model off) and those idle longer
    /// than `idle` (their state is a few kilobytes each: a device that went away must not keep it).
    pub fn forget(&mut self, owners: &HashSet<String>, idle: std::time::Duration) {
        self.streams
            .retain(|(owner, _), s| !owners.contains(owner) && s.touched.elapsed() < idle);
    }

    /// Streams held.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

/// The motion samples of a pack in time order, `None` when it has no motion records, or why
/// the model cannot use it.
fn motion_samples(rows: &[Row]) -> Result<Option<Vec<(i64, Sample)>>, String> {
    let mut by_time: BTreeMap<i64, [Option<f32>; 6]> = BTreeMap::new();
    for row in rows {
        let Some(c) = channel_of(&row.name) else {
            continue;
        };
        let channel = CHANNELS[c];
        if let Some(unit) = &row.unit {
            if unit != channel.unit {
                return Err(format!(
                    "motion: {} must be in {}, not {unit}",
                    channel.name, channel.unit
                ));
            }
        }
        let Some(value) = row.value.filter(|v| v.is_finite()) else {
            return Err(format!(
                "motion: {} at {} ms has no numeric value",
                channel.name, row.time_ms
            ));
        };
        let slot = &mut by_time.entry(row.time_ms).or_default()[c];
        if slot.is_some() {
            return Err(format!(
                "motion: {} appears twice at {} ms",
                channel.name, row.time_ms
            ));
        }
        *slot = Some(value as f32);
    }
    if by_time.is_empty() {
        return Ok(None);
    }
    let mut samples = Vec::with_capacity(by_time.len());
    let mut previous: Option<i64> = None;
    for (time_ms, channels) in by_time {
        if let Some(missing) = channels.iter().position(Option::is_none) {
            return Err(format!(
                "motion: {} is missing at {time_ms} ms (every sample needs all six channels)",
                CHANNELS[missing].name
            ));
        }
        if let Some(p) = previous {
            let interval = time_ms - p;
            if (interval - SAMPLE_MS).abs() > JITTER_MS {
                return Err(format!(
                    "motion: samples {interval} ms apart at {time_ms} ms; the model needs {SAMPLE_HZ} Hz ({SAMPLE_MS} ms apart)"
                ));
            }
        }
        previous = Some(time_ms);
        samples.push((time_ms, channels.map(|v| v.unwrap_or_default())));
    }
    Ok(Some(samples))
}
