//! What a motion stream is: the six channels a device sends, their units and rate, and the six
//! activities the model tells apart.
//!
//! These names are the contract with firmware (docs/model.md): a SenML pack whose records are
//! named `acc_x` … `gyr_z` with these units is a motion pack.

use serde::{Deserialize, Serialize};

/// Samples per second the model was trained on (the HAPT recordings are 50 Hz).
pub const SAMPLE_HZ: u32 = 50;
/// Samples in one window: 2.56 s at 50 Hz, as in the UCI-HAR protocol.
pub const WINDOW: usize = 128;
/// Samples between the starts of two windows: 50 % overlap.
pub const STEP: usize = 64;
/// Standard gravity, to turn the data set's g into the m/s² devices send.
pub const STANDARD_GRAVITY: f32 = 9.80665;

/// One motion channel: its SenML record name and unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub name: &'static str,
    pub unit: &'static str,
}

/// The channels in the order of the model's input rows.
pub const CHANNELS: [Channel; 6] = [
    Channel {
        name: "acc_x",
        unit: "m/s2",
    },
    Channel {
        name: "acc_y",
        unit: "m/s2",
    },
    Channel {
        name: "acc_z",
        unit: "m/s2",
    },
    Channel {
        name: "gyr_x",
        unit: "rad/s",
    },
    Channel {
        name: "gyr_y",
        unit: "rad/s",
    },
    Channel {
        name: "gyr_z",
        unit: "rad/s",
    },
];

/// The channel a SenML record is for: the last component of its resolved name (after the
/// last `/` or `:`, so a base name such as `urn:dev:watch1:` or `watch/` is allowed) is the
/// channel's name.
pub fn channel_of(name: &str) -> Option<usize> {
    let last = name.rsplit(['/', ':']).next().unwrap_or(name);
    CHANNELS.iter().position(|c| c.name == last)
}

/// One sample of all six channels: acceleration in m/s² (gravity included), rotation in rad/s.
pub type Sample = [f32; 6];

/// The activities of the UCI-HAR protocol, in the order of the model's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    Walking,
    Upstairs,
    Downstairs,
    Sitting,
    Standing,
    Lying,
}

impl Activity {
    pub const ALL: [Activity; 6] = [
        Activity::Walking,
        Activity::Upstairs,
        Activity::Downstairs,
        Activity::Sitting,
        Activity::Standing,
        Activity::Lying,
    ];

    /// The activity at this output index of the model.
    pub fn from_index(index: usize) -> Option<Activity> {
        Self::ALL.get(index).copied()
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The name stored and served by the API (`walking`, `upstairs`, …).
    pub fn name(self) -> &'static str {
        match self {
            Activity::Walking => "walking",
            Activity::Upstairs => "upstairs",
            Activity::Downstairs => "downstairs",
            Activity::Sitting => "sitting",
            Activity::Standing => "standing",
            Activity::Lying => "lying",
        }
    }

    /// The activity a name read back from the store names.
    pub fn from_name(name: &str) -> Option<Activity> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}
