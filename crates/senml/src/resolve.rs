//! Applies base fields to records (RFC 8428 §4.6 "resolved records") and
//! validates the result.
//!
//! Invariants: base fields carry forward from the record that sets them
//! until a later record sets them again; a record that holds base fields and
//! nothing else (e.g. `{"bn":"urn:dev:ow:10e2073a01080063:"}` in §5.1.7) only
//! sets them and yields no measurement. One pass, linear in the pack.

use crate::error::{quoted, Invalid, Result};
use crate::record::RawRecord;
use crate::{units, validate, Measurement, Value};

/// Highest SenML version understood: RFC 8428 is version 10 (§4.4).
pub const MAX_VERSION: u64 = 10;

/// The base fields in force.
#[derive(Default)]
struct Base {
    name: Option<String>,
    time: Option<f64>,
    unit: Option<String>,
    value: Option<f64>,
    sum: Option<f64>,
}

pub(crate) fn resolve(records: Vec<RawRecord>, received_ms: i64) -> Result<Vec<Measurement>> {
    let mut base = Base::default();
    let mut out = Vec::with_capacity(records.len());
    for (index, record) in records.into_iter().enumerate() {
        if let Some(m) = resolve_one(&mut base, record, received_ms)
            .map_err(|reason| Invalid::record(index, reason))?
        {
            out.push(m);
        }
    }
    Ok(out)
}

fn resolve_one(
    base: &mut Base,
    r: RawRecord,
    received_ms: i64,
) -> Result<Option<Measurement>, String> {
    if let Some(bver) = r.bver {
        if !(1..=MAX_VERSION).contains(&bver) {
            return Err(format!(
                "field \"bver\" is {bver}, not a supported version (1 to {MAX_VERSION})"
            ));
        }
    }
    let only_base = r.n.is_none()
        && r.u.is_none()
        && r.v.is_none()
        && r.vs.is_none()
        && r.vb.is_none()
        && r.vd.is_none()
        && r.s.is_none()
        && r.t.is_none()
        && (r.bver.is_some()
            || r.bn.is_some()
            || r.bt.is_some()
            || r.bu.is_some()
            || r.bv.is_some()
            || r.bs.is_some());
    let RawRecord {
        bn,
        bt,
        bu,
        bv,
        bs,
        n,
        u,
        v,
        vs,
        vb,
        vd,
        s,
        t,
        ..
    } = r;
    if bn.is_some() {
        base.name = bn;
    }
    if bt.is_some() {
        base.time = bt;
    }
    if bu.is_some() {
        base.unit = bu;
    }
    if bv.is_some() {
        base.value = bv;
    }
    if bs.is_some() {
        base.sum = bs;
    }
    if only_base {
        return Ok(None);
    }

    let present = [
        ("v", v.is_some()),
        ("vs", vs.is_some()),
        ("vb", vb.is_some()),
        ("vd", vd.is_some()),
    ];
    if present.iter().filter(|(_, is)| *is).count() > 1 {
        let given: Vec<&str> = present
            .iter()
            .filter_map(|(label, is)| is.then_some(*label))
            .collect();
        return Err(format!(
            "has more than one value ({}); exactly one of v, vs, vb, vd is allowed",
            given.join(", ")
        ));
    }
    let value = if let Some(v) = v {
        Value::Number(add(base.value, v, "value (bv + v)")?)
    } else if let Some(vs) = vs {
        Value::String(vs)
    } else if let Some(vb) = vb {
        Value::Bool(vb)
    } else if let Some(vd) = vd {
        Value::Data(vd)
    } else if s.is_some() {
        Value::None
    } else {
        return Err("has no value; one of v, vs, vb, vd or a sum s is required".to_owned());
    };
    let sum = s.map(|s| add(base.sum, s, "sum (bs + s)")).transpose()?;

    let name = match (&base.name, n) {
        (Some(bn), Some(n)) => bn.clone() + &n,
        (Some(bn), None) => bn.clone(),
        (None, Some(n)) => n,
        (None, None) => String::new(),
    };
    validate::name(&name)?;

    let unit = u.or_else(|| base.unit.clone());
    if let Some(unit) = &unit {
        if !units::is_registered(unit) {
            return Err(format!(
                "unit {} is not in the SenML units registry",
                quoted(unit)
            ));
        }
    }

    let seconds = match (base.time, t) {
        (Some(bt), Some(t)) => Some(bt + t),
        (bt, t) => bt.or(t),
    };
    let time_ms = validate::time(seconds, received_ms)?;

    Ok(Some(Measurement {
        name,
        unit,
        time_ms,
        value,
        sum,
    }))
}

/// `base + x`, adding only when a base is set so that `-0.0` stays `-0.0`.
fn add(base: Option<f64>, x: f64, what: &str) -> Result<f64, String> {
    let sum = base.map_or(x, |b| b + x);
    if sum.is_finite() {
        Ok(sum)
    } else {
        Err(format!("{what} is not a finite number"))
    }
}
