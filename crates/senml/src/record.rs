//! The format-neutral form of one SenML record, as read from JSON or CBOR
//! before base fields are applied (RFC 8428 §4.1, §6).
//!
//! ```text
//! label  JSON  CBOR  type         label  JSON  CBOR  type
//! bver   bver   -1   uint         n      n      0    text
//! bn     bn     -2   text         u      u      1    text
//! bt     bt     -3   number       v      v      2    number
//! bu     bu     -4   text         vs     vs     3    text
//! bv     bv     -5   number       vb     vb     4    bool
//! bs     bs     -6   number       s      s      5    number
//!                                 t      t      6    number
//!                                 ut     ut     7    number (ignored)
//!                                 vd     vd     8    base64url text (JSON) / bytes (CBOR)
//! ```
//!
//! Unknown labels are ignored unless their name ends in `_`, which marks a
//! field the receiver must understand (§4.4): such a pack is rejected.

use crate::error::{quoted, Invalid, Result};

/// A field of a record, named by its JSON label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    Bver,
    Bn,
    Bt,
    Bu,
    Bv,
    Bs,
    N,
    U,
    V,
    Vs,
    Vb,
    S,
    T,
    Ut,
    Vd,
}

impl Label {
    const ALL: [Label; 15] = [
        Label::Bver,
        Label::Bn,
        Label::Bt,
        Label::Bu,
        Label::Bv,
        Label::Bs,
        Label::N,
        Label::U,
        Label::V,
        Label::Vs,
        Label::Vb,
        Label::S,
        Label::T,
        Label::Ut,
        Label::Vd,
    ];

    /// The JSON label (§4, Table 1).
    pub(crate) fn json(self) -> &'static str {
        match self {
            Label::Bver => "bver",
            Label::Bn => "bn",
            Label::Bt => "bt",
            Label::Bu => "bu",
            Label::Bv => "bv",
            Label::Bs => "bs",
            Label::N => "n",
            Label::U => "u",
            Label::V => "v",
            Label::Vs => "vs",
            Label::Vb => "vb",
            Label::S => "s",
            Label::T => "t",
            Label::Ut => "ut",
            Label::Vd => "vd",
        }
    }

    /// The CBOR integer label (§6, Table 4).
    pub(crate) fn cbor(self) -> i64 {
        match self {
            Label::Bver => -1,
            Label::Bn => -2,
            Label::Bt => -3,
            Label::Bu => -4,
            Label::Bv => -5,
            Label::Bs => -6,
            Label::N => 0,
            Label::U => 1,
            Label::V => 2,
            Label::Vs => 3,
            Label::Vb => 4,
            Label::S => 5,
            Label::T => 6,
            Label::Ut => 7,
            Label::Vd => 8,
        }
    }

    pub(crate) fn from_json(name: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.json() == name)
    }

    pub(crate) fn from_cbor(key: i128) -> Option<Label> {
        Label::ALL.into_iter().find(|l| i128::from(l.cbor()) == key)
    }
}

/// Reads a field's value in the shape its label needs; implemented by each
/// format for its own value type.
pub(crate) trait FieldValue {
    fn number(&self) -> Option<f64>;
    fn text(&self) -> Option<&str>;
    fn boolean(&self) -> Option<bool>;
    /// The octets of a data value; `Err` says why they are not.
    fn data(&self) -> Result<Vec<u8>, String>;
    /// The base version: an unsigned integer.
    fn version(&self) -> Option<u64>;
}

/// One record as written, before base fields are applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RawRecord {
    pub bver: Option<u64>,
    pub bn: Option<String>,
    pub bt: Option<f64>,
    pub bu: Option<String>,
    pub bv: Option<f64>,
    pub bs: Option<f64>,
    pub n: Option<String>,
    pub u: Option<String>,
    pub v: Option<f64>,
    pub vs: Option<String>,
    pub vb: Option<bool>,
    pub vd: Option<Vec<u8>>,
    pub s: Option<f64>,
    pub t: Option<f64>,
}

impl RawRecord {
    /// Sets `label` from `value`, checking its type.
    pub(crate) fn set(
        &mut self,
        index: usize,
        label: Label,
        value: &impl FieldValue,
    ) -> Result<()> {
        let name = label.json();
        let number = || {
            let n = value.number().ok_or_else(|| {
                Invalid::record(index, format!("field \"{name}\" must be a number"))
            })?;
            if n.is_finite() {
                Ok(n)
            } else {
                Err(Invalid::record(
                    index,
                    format!("field \"{name}\" must be a finite number"),
                ))
            }
        };
        let text = || {
            value
                .text()
                .map(str::to_owned)
                .ok_or_else(|| Invalid::record(index, format!("field \"{name}\" must be a string")))
        };
        match label {
            Label::Bver => {
                let bver = value.version().ok_or_else(|| {
                    Invalid::record(index, "field \"bver\" must be an unsigned integer")
                })?;
                self.bver = Some(bver);
            }
            Label::Bn => self.bn = Some(text()?),
            Label::Bt => self.bt = Some(number()?),
            Label::Bu => self.bu = Some(text()?),
            Label::Bv => self.bv = Some(number()?),
            Label::Bs => self.bs = Some(number()?),
            Label::N => self.n = Some(text()?),
            Label::U => self.u = Some(text()?),
            Label::V => self.v = Some(number()?),
            Label::Vs => self.vs = Some(text()?),
            Label::Vb => {
                let vb = value
                    .boolean()
                    .ok_or_else(|| Invalid::record(index, "field \"vb\" must be a boolean"))?;
                self.vb = Some(vb);
            }
            Label::Vd => {
                let vd = value
                    .data()
                    .map_err(|why| Invalid::record(index, format!("field \"vd\" {why}")))?;
                self.vd = Some(vd);
            }
            Label::S => self.s = Some(number()?),
            Label::T => self.t = Some(number()?),
            // Update time is a hint for when to expect the next value; a
            // store has no use for it (§4.5.3 allows ignoring it).
            Label::Ut => {}
        }
        Ok(())
    }

    /// Handles a label this crate does not know: ignored, unless it must be
    /// understood (§4.4).
    pub(crate) fn unknown(index: usize, name: &str) -> Result<()> {
        if name.ends_with('_') {
            Err(Invalid::record(
                index,
                format!(
                    "field {} must be understood but is not supported",
                    quoted(name)
                ),
            ))
        } else {
            Ok(())
        }
    }
}
