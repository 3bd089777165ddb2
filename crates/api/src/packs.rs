//! Pooled packs (docs/packs.md): the buyer defines packs and asks for
//! releases; owners see the offers, set their privacy budget and the profile
//! fields a cohort may use, opt in and out with signed receipts, and read
//! their earnings.
//!
//! What a release computes is `tributary_rights::pack` (budgets, k, clamping,
//! OpenDP's noise); this module loads its inputs from the store, and stores
//! the outcome, the ledgers and the participants' audit entries.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_accounts::Grant;
use tributary_rights::consent::Status;
use tributary_rights::pack::{self, Aggregates, Participant, Refusal, ReleaseSpec};
use tributary_rights::purpose::purpose_of;
use tributary_rights::receipt::{random_id, Decided};
use tributary_store::{
    AuditRecord, LedgerEntry, Pack, PackRelease, PackSettings, Participation, Query as PointQuery,
    Recorded,
};

use crate::auth::Owner;
use crate::data::Params;
use crate::error::{store_error, ApiError, Result};
use crate::ApiState;

const DAY_MS: i64 = 86_400_000;
/// The longest pack, in days: a year and a leap day.
const MAX_DAYS: i64 = 366;
/// The least and most ε one release may cost each participant.
const EPSILON_RANGE: (f64, f64) = (0.01, 10.0);
/// The most owners one release reads (each costs one store query).
const MAX_PARTICIPANTS: usize = 10_000;
/// Lists of packs, releases and ledger entries are at most this long.
const MAX_LIST: usize = 200;
/// Participants' receipts say the buyer keeps released figures this long.
const RETENTION_DAYS: u32 = 365;

/// The authenticated buyer of a request: a service granted `packs`.
pub(crate) struct Buyer(String);

impl FromRequestParts<ApiState> for Buyer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Buyer> {
        let (service, grants) = crate::service::authenticate(parts, state).await?;
        if !grants.contains(Grant::Packs) {
            return Err(ApiError::Forbidden(
                "this service was not granted 'packs' (tributary service add NAME --grant packs)",
            ));
        }
        Ok(Buyer(service))
    }
}

/// A pack's definition as the buyer sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Definition {
    title: String,
    measurement: String,
    purpose: String,
    /// First day, `YYYY-MM-DD` (UTC).
    from: String,
    /// Last day, included.
    to: String,
    lower: f64,
    upper: f64,
    epsilon: f64,
    aggregates: AggregatesBody,
    #[serde(default = "min_participants")]
    min_participants: usize,
    #[serde(default)]
    cohort: Cohort,
    price_cents: i64,
    currency: String,
}

fn min_participants() -> usize {
    pack::DEFAULT_MIN_PARTICIPANTS
}

#[derive(Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct AggregatesBody {
    #[serde(default)]
    count: bool,
    #[serde(default)]
    mean: bool,
    #[serde(default)]
    histogram: Option<Vec<f64>>,
    #[serde(default)]
    percentiles: Vec<f64>,
}

#[derive(Deserialize, Serialize, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct Cohort {
    #[serde(default)]
    age_band: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

/// What the store keeps as a pack's `spec`: the release's definition.
#[derive(Deserialize, Serialize, Clone)]
struct Spec {
    first_day: i64,
    last_day: i64,
    lower: f64,
    upper: f64,
    epsilon: f64,
    aggregates: AggregatesBody,
    min_participants: usize,
}

impl Spec {
    fn release_spec(&self) -> ReleaseSpec {
        ReleaseSpec {
            days: (self.first_day..=self.last_day).collect(),
            lower: self.lower,
            upper: self.upper,
            epsilon: self.epsilon,
            aggregates: Aggregates {
                count: self.aggregates.count,
                mean: self.aggregates.mean,
                histogram: self.aggregates.histogram.clone(),
                percentiles: self.aggregates.percentiles.clone(),
            },
            min_participants: self.min_participants,
        }
    }
}

fn bad(field: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::BadBody(format!("{field}: {problem}"))
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn parse_day(field: &str, s: &str) -> Result<i64> {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts[..] else {
        return Err(bad(field, "a date as YYYY-MM-DD"));
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return Err(bad(field, "a date as YYYY-MM-DD"));
    };
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad(field, format!("{s} is no date between 1970 and 9999")));
    }
    Ok(days_from_civil(y, m, d))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of days since 1970-01-01.
fn day_string(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn check_name(field: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(bad(
            field,
            format!("1 to {max} characters, no control characters"),
        ));
    }
    Ok(())
}

impl Definition {
    fn validate(self, buyer: &str, now_ms: i64) -> Result<Pack> {
        check_name("title", &self.title, 200)?;
        check_name("measurement", &self.measurement, 64)?;
        if purpose_of(&self.purpose).is_none() {
            return Err(bad(
                "purpose",
                format!(
                    "{:?} is not a DPV purpose this server knows (GET /api/v1/consent/purposes)",
                    self.purpose
                ),
            ));
        }
        let first_day = parse_day("from", &self.from)?;
        let last_day = parse_day("to", &self.to)?;
        if last_day < first_day {
            return Err(bad("to", "the last day comes before the first"));
        }
        if last_day - first_day + 1 > MAX_DAYS {
            return Err(bad("to", format!("a pack spans at most {MAX_DAYS} days")));
        }
        if !(EPSILON_RANGE.0..=EPSILON_RANGE.1).contains(&self.epsilon) {
            return Err(bad(
                "epsilon",
                format!("between {} and {}", EPSILON_RANGE.0, EPSILON_RANGE.1),
            ));
        }
        if self.min_participants < pack::DEFAULT_MIN_PARTICIPANTS {
            return Err(bad(
                "min_participants",
                format!(
                    "at least {} (the installation's floor)",
                    pack::DEFAULT_MIN_PARTICIPANTS
                ),
            ));
        }
        if !(0..=100_000_000).contains(&self.price_cents) {
            return Err(bad("price_cents", "between 0 and 100,000,000"));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad("currency", "an ISO 4217 code such as EUR"));
        }
        for (field, value) in [
            ("cohort.age_band", &self.cohort.age_band),
            ("cohort.region", &self.cohort.region),
        ] {
            if let Some(v) = value {
                check_name(field, v, 64)?;
            }
        }
        let spec = Spec {
            first_day,
            last_day,
            lower: self.lower,
            upper: self.upper,
            epsilon: self.epsilon,
            aggregates: self.aggregates,
            min_participants: self.min_participants,
        };
        spec.release_spec()
            .validate()
            .map_err(|e| ApiError::BadBody(e.to_string()))?;
        let spec =
            serde_json::to_string(&spec).map_err(|e| ApiError::internal("keep a pack", e))?;
        let id = random_id().map_err(|e| ApiError::internal("make a pack id", e))?;
        Ok(Pack {
            id: format!("pk-{id}"),
            buyer: buyer.to_owned(),
            title: self.title,
            measurement: self.measurement,
            purpose: self.purpose,
            spec,
            age_band: self.cohort.age_band,
            region: self.cohort.region,
            price_cents: self.price_cents,
            currency: self.currency,
            created_ms: now_ms,
        })
    }
}

fn spec_of(pack: &Pack) -> Result<Spec> {
    serde_json::from_str(&pack.spec).map_err(|e| ApiError::internal("read a pack", e))
}

/// A pack as the buyer and the owners see it.
#[derive(Serialize)]
pub(crate) struct PackView {
    id: String,
    buyer: String,
    title: String,
    measurement: String,
    purpose: String,
    from: String,
    to: String,
    lower: f64,
    upper: f64,
    epsilon: f64,
    aggregates: AggregatesBody,
    min_participants: usize,
    cohort: Cohort,
    price_cents: i64,
    currency: String,
    created_ms: i64,
}

fn pack_view(pack: Pack) -> Result<PackView> {
    let spec = spec_of(&pack)?;
    Ok(PackView {
        id: pack.id,
        buyer: pack.buyer,
        title: pack.title,
        measurement: pack.measurement,
        purpose: pack.purpose,
        from: day_string(spec.first_day),
        to: day_string(spec.last_day),
        lower: spec.lower,
        upper: spec.upper,
        epsilon: spec.epsilon,
        aggregates: spec.aggregates,
        min_participants: spec.min_participants,
        cohort: Cohort {
            age_band: pack.age_band,
            region: pack.region,
        },
        price_cents: pack.price_cents,
        currency: pack.currency,
        created_ms: pack.created_ms,
    })
}

fn now_ms() -> i64 {
    crate::unix_ms(std::time::SystemTime::now())
}

/// `POST /api/v1/service/packs`: defines a pack.
pub(crate) async fn define(
    State(state): State<ApiState>,
    Buyer(buyer): Buyer,
    body: Result<Json<Definition>, JsonRejection>,
) -> Result<(StatusCode, Json<PackView>)> {
    let Json(definition) = body?;
    let pack = definition.validate(&buyer, now_ms())?;
    state
        .inner
        .store
        .create_pack(&pack)
        .await
        .map_err(store_error)?;
    tracing::info!(%buyer, pack = %pack.id, "pack defined");
    Ok((StatusCode::CREATED, Json(pack_view(pack)?)))
}

#[derive(Serialize)]
pub(crate) struct BuyerPackView {
    #[serde(flatten)]
    pack: PackView,
    /// Owners in the pack now (joined, not withdrawn).
    participants: usize,
    releases: usize,
}

/// `GET /api/v1/service/packs`: the buyer's packs, newest first.
pub(crate) async fn buyer_packs(
    State(state): State<ApiState>,
    Buyer(buyer): Buyer,
) -> Result<Json<Vec<BuyerPackView>>> {
    let store = &state.inner.store;
    let packs = store
        .packs(Some(&buyer), None, MAX_LIST)
        .await
        .map_err(store_error)?;
    let mut views = Vec::with_capacity(packs.len());
    for pack in packs {
        let participants = store
            .pack_participants(&pack.id, MAX_PARTICIPANTS)
            .await
            .map_err(store_error)?
            .len();
        let releases = store
            .pack_releases(&pack.id, MAX_LIST)
            .await
            .map_err(store_error)?
            .len();
        views.push(BuyerPackView {
            pack: pack_view(pack)?,
            participants,
            releases,
        });
    }
    Ok(Json(views))
}

/// The buyer's own pack, or 404 (another buyer's is never revealed).
async fn buyers_pack(state: &ApiState, buyer: &str, id: &str) -> Result<Pack> {
    match state.inner.store.pack(id).await.map_err(store_error)? {
        Some(pack) if pack.buyer == buyer => Ok(pack),
        _ => Err(ApiError::NotFound(format!("no pack {id} of yours"))),
    }
}

/// A release as the buyer reads it: the published body.
fn release_view(release: &PackRelease) -> Result<serde_json::Value> {
    serde_json::from_str(&release.body).map_err(|e| ApiError::internal("read a release", e))
}

/// `GET /api/v1/service/packs/{id}/releases`: the pack's releases, oldest first.
pub(crate) async fn releases(
    State(state): State<ApiState>,
    Buyer(buyer): Buyer,
    Path(id): Path<String>,
) -> Result<Json<Vec<serde_json::Value>>> {
    let pack = buyers_pack(&state, &buyer, &id).await?;
    let releases = state
        .inner
        .store
        .pack_releases(&pack.id, MAX_LIST)
        .await
        .map_err(store_error)?;
    releases
        .iter()
        .map(release_view)
        .collect::<Result<_>>()
        .map(Json)
}

fn fits_cohort(pack: &Pack, settings: &PackSettings) -> bool {
    let fits = |asked: &Option<String>, shared: &Option<String>| {
        asked.is_none() || (asked.is_some() && asked == shared)
    };
    fits(&pack.age_band, &settings.age_band) && fits(&pack.region, &settings.region)
}

/// `POST /api/v1/service/packs/{id}/releases`: releases the pack now, or
/// says why not (409).
pub(crate) async fn release(
    State(state): State<ApiState>,
    Buyer(buyer): Buyer,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
    let started = std::time::Instant::now();
    let pack = buyers_pack(&state, &buyer, &id).await?;
    let spec = spec_of(&pack)?;
    let store = &state.inner.store;

    // Who is in: joined, not withdrawn, and still in the cohort.
    let joined = store
        .pack_participants(&pack.id, MAX_PARTICIPANTS)
        .await
        .map_err(store_error)?;
    let mut owners = Vec::with_capacity(joined.len());
    for owner in joined {
        if fits_cohort(
            &pack,
            &store.pack_settings(&owner).await.map_err(store_error)?,
        ) {
            owners.push(owner);
        }
    }
    let budgets = store.budgets(&owners).await.map_err(store_error)?;

    // Each participant's daily means, from the store's day buckets.
    let from_ms = spec.first_day * DAY_MS;
    let to_ms = (spec.last_day + 1) * DAY_MS;
    let days = usize::try_from(spec.last_day - spec.first_day + 1).unwrap_or(0);
    let mut participants = Vec::with_capacity(owners.len());
    for (owner, budget) in owners.iter().zip(&budgets) {
        let values = daily_means(store, owner, &pack.measurement, from_ms, to_ms, days).await?;
        participants.push(Participant {
            id: owner.clone(),
            budget_left: budget.left(),
            values,
        });
    }

    let released = match pack::release(&spec.release_spec(), &participants) {
        Ok(released) => released,
        Err(Refusal::Noise(e)) => return Err(ApiError::internal("add noise to a release", e)),
        Err(refusal) => {
            tracing::info!(%buyer, pack = %pack.id, %refusal, "pack release refused");
            return Err(ApiError::Conflict(format!("release refused: {refusal}")));
        }
    };

    let existing = store
        .pack_releases(&pack.id, MAX_LIST)
        .await
        .map_err(store_error)?;
    let seq = existing.last().map_or(0, |r| r.seq) + 1;
    let at_ms = now_ms();
    let mut body =
        serde_json::to_value(&released).map_err(|e| ApiError::internal("publish a release", e))?;
    let days_out: Vec<serde_json::Value> = released
        .days
        .iter()
        .map(|d| {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["day"] = day_string(d.day).into();
            v
        })
        .collect();
    body["days"] = days_out.into();
    body["pack"] = pack.id.clone().into();
    body["seq"] = seq.into();
    body["released_ms"] = at_ms.into();
    body["measurement"] = pack.measurement.clone().into();
    let record = PackRelease {
        pack_id: pack.id.clone(),
        seq,
        released_ms: at_ms,
        participants: released.participants as u64,
        body: body.to_string(),
    };
    let ledger: Vec<LedgerEntry> = released
        .included
        .iter()
        .map(|owner| LedgerEntry {
            owner: owner.clone(),
            pack_id: pack.id.clone(),
            seq,
            epsilon: spec.epsilon,
            amount_cents: pack.price_cents,
            currency: pack.currency.clone(),
            at_ms,
        })
        .collect();
    match store
        .record_release(&record, &ledger)
        .await
        .map_err(store_error)?
    {
        Recorded::Stored => {}
        Recorded::SeqTaken => {
            return Err(ApiError::Conflict(
                "another release of this pack was made meanwhile; ask again".into(),
            ))
        }
        Recorded::OverBudget(_) => {
            return Err(ApiError::Conflict(
                "a participant's budget was spent meanwhile; ask again".into(),
            ))
        }
    }

    // The participants' audit logs: what left, to whom, at what cost.
    let audit: Vec<AuditRecord> = released
        .included
        .iter()
        .map(|owner| {
            let contributed = participants
                .iter()
                .find(|p| &p.id == owner)
                .map_or(0, |p| p.values.len() as u64);
            AuditRecord {
                id: 0,
                owner: owner.clone(),
                actor_kind: "service".into(),
                actor: buyer.clone(),
                channel: "pack".into(),
                detail: format!(
                    "pack {} release {seq}: daily {} of {} to {}, noisy, ε = {}",
                    pack.id,
                    pack.measurement,
                    day_string(spec.first_day),
                    day_string(spec.last_day),
                    spec.epsilon
                ),
                device: String::new(),
                consent_id: Some(pack.id.clone()),
                count: contributed,
                first_ms: from_ms,
                last_ms: to_ms - 1,
            }
        })
        .collect();
    store
        .append_audit(&audit, at_ms)
        .await
        .map_err(store_error)?;
    tracing::info!(
        %buyer,
        pack = %pack.id,
        seq,
        participants = released.participants,
        left_out = released.left_out.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pack released"
    );
    Ok((StatusCode::CREATED, Json(body)))
}

/// Whether a stored name is the pack's measurement: the name itself, or a
/// SenML name resolved under a base name (`watch-1/heart_rate`), as devices
/// usually publish them.
fn is_measurement(name: &str, measurement: &str) -> bool {
    name == measurement
        || name
            .strip_suffix(measurement)
            .is_some_and(|prefix| prefix.ends_with('/'))
}

/// One owner's daily means of the pack's measurement over `[from_ms, to_ms)`,
/// from the store's day buckets of every name that is the measurement
/// (each day's mean weighted by the values of each name).
async fn daily_means(
    store: &tributary_store::Store,
    owner: &str,
    measurement: &str,
    from_ms: i64,
    to_ms: i64,
    days: usize,
) -> Result<BTreeMap<pack::Day, f64>> {
    let names: Vec<String> = store
        .summary(owner)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|s| s.name)
        .filter(|name| is_measurement(name, measurement))
        .collect();
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let limit = days.saturating_mul(names.len());
    let points = store
        .query(&PointQuery {
            owner: owner.to_owned(),
            from_ms,
            to_ms,
            names,
            bucket_ms: Some(DAY_MS),
            limit,
        })
        .await
        .map_err(store_error)?;
    let mut sums: BTreeMap<pack::Day, (f64, f64)> = BTreeMap::new();
    for p in &points {
        let (Some(avg), true) = (p.avg, p.count > 0) else {
            continue;
        };
        let entry = sums.entry(p.time_ms.div_euclid(DAY_MS)).or_default();
        entry.0 += avg * p.count as f64;
        entry.1 += p.count as f64;
    }
    Ok(sums
        .into_iter()
        .map(|(day, (sum, count))| (day, sum / count))
        .collect())
}

/// An offer as an owner sees it.
#[derive(Serialize)]
pub(crate) struct OfferView {
    #[serde(flatten)]
    pack: PackView,
    /// Whether the owner's shared profile fits the pack's cohort now.
    fits_cohort: bool,
    /// `joined`, `withdrawn` or `null`.
    status: Option<String>,
    /// The signed receipts of joining and withdrawing, when there are.
    receipt: Option<String>,
    withdraw_receipt: Option<String>,
}

/// `GET /api/v1/packs`: the offers, newest first, with the owner's place in each.
pub(crate) async fn offers(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Vec<OfferView>>> {
    let params = Params::new(raw, &["limit"])?;
    let limit = params.limit(50, MAX_LIST)?;
    let store = &state.inner.store;
    let settings = store.pack_settings(&owner).await.map_err(store_error)?;
    let mine: HashMap<String, Participation> = store
        .owner_participations(&owner, MAX_LIST)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|p| (p.pack_id.clone(), p))
        .collect();
    let packs = store.packs(None, None, limit).await.map_err(store_error)?;
    let mut views = Vec::with_capacity(packs.len());
    for pack in packs {
        let fits = fits_cohort(&pack, &settings);
        let place = mine.get(&pack.id);
        views.push(OfferView {
            fits_cohort: fits,
            status: place.map(|p| p.status.clone()),
            receipt: place.map(|p| p.receipt.clone()),
            withdraw_receipt: place.and_then(|p| p.withdraw_receipt.clone()),
            pack: pack_view(pack)?,
        });
    }
    Ok(Json(views))
}

#[derive(Serialize)]
pub(crate) struct ReceiptAnswer {
    pack: String,
    status: &'static str,
    /// The signed receipt (compact JWS), verifiable with /api/v1/consent/jwks.json.
    receipt: String,
}

/// The receipt of an owner's decision on a pack.
async fn pack_receipt(
    state: &ApiState,
    owner: &str,
    pack: &Pack,
    status: Status,
    at_ms: i64,
) -> Result<String> {
    let purpose = purpose_of(&pack.purpose).ok_or_else(|| {
        ApiError::internal("read a pack", format!("unknown purpose {:?}", pack.purpose))
    })?;
    let key = state.inner.receipts.key(&state.inner.store).await?;
    let receipt_id = random_id().map_err(|e| ApiError::internal("make a receipt id", e))?;
    let types = [pack.measurement.clone()];
    let receipt = state.inner.receipts.issuer().receipt(&Decided {
        consent_id: &pack.id,
        receipt_id: &receipt_id,
        owner,
        service: &pack.buyer,
        types: &types,
        purpose,
        retention_days: RETENTION_DAYS,
        third_parties: &[],
        status,
        at_ms,
    });
    Ok(key.sign(&receipt))
}

async fn offered_pack(state: &ApiState, id: &str) -> Result<Pack> {
    state
        .inner
        .store
        .pack(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no pack {id}")))
}

/// `POST /api/v1/packs/{id}/join`: opts in, with a signed receipt.
pub(crate) async fn join(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ReceiptAnswer>)> {
    let pack = offered_pack(&state, &id).await?;
    let store = &state.inner.store;
    let settings = store.pack_settings(&owner).await.map_err(store_error)?;
    if !fits_cohort(&pack, &settings) {
        return Err(ApiError::Conflict(format!(
            "pack {id} is for a cohort your shared profile does not match (age band {:?}, region {:?}); share yours in PUT /api/v1/packs/settings",
            pack.age_band, pack.region
        )));
    }
    let at_ms = now_ms();
    let receipt = pack_receipt(&state, &owner, &pack, Status::Granted, at_ms).await?;
    let joined = store
        .join_pack(&Participation {
            pack_id: pack.id.clone(),
            owner: owner.clone(),
            status: "joined".into(),
            joined_ms: at_ms,
            withdrawn_ms: None,
            receipt: receipt.clone(),
            withdraw_receipt: None,
        })
        .await
        .map_err(store_error)?;
    if !joined {
        return Err(ApiError::Conflict(format!("you are in pack {id} already")));
    }
    tracing::info!(%owner, pack = %pack.id, "pack joined");
    Ok((
        StatusCode::CREATED,
        Json(ReceiptAnswer {
            pack: pack.id,
            status: "joined",
            receipt,
        }),
    ))
}

/// `POST /api/v1/packs/{id}/withdraw`: opts out of every later release.
pub(crate) async fn withdraw(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<Json<ReceiptAnswer>> {
    let pack = offered_pack(&state, &id).await?;
    let at_ms = now_ms();
    let receipt = pack_receipt(&state, &owner, &pack, Status::Revoked, at_ms).await?;
    if !state
        .inner
        .store
        .withdraw_pack(&pack.id, &owner, at_ms, &receipt)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::Conflict(format!("you are not in pack {id}")));
    }
    tracing::info!(%owner, pack = %pack.id, "pack withdrawn");
    Ok(Json(ReceiptAnswer {
        pack: pack.id,
        status: "withdrawn",
        receipt,
    }))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsBody {
    budget_ceiling: f64,
    #[serde(default)]
    age_band: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct SettingsView {
    budget_ceiling: f64,
    spent: f64,
    left: f64,
    age_band: Option<String>,
    region: Option<String>,
}

async fn settings_view(state: &ApiState, owner: &str) -> Result<SettingsView> {
    let store = &state.inner.store;
    let settings = store.pack_settings(owner).await.map_err(store_error)?;
    let budget = store
        .budgets(&[owner.to_owned()])
        .await
        .map_err(store_error)?[0];
    Ok(SettingsView {
        budget_ceiling: settings.budget_ceiling,
        spent: budget.spent,
        left: budget.left(),
        age_band: settings.age_band,
        region: settings.region,
    })
}

/// `GET /api/v1/packs/settings`.
pub(crate) async fn settings(
    State(state): State<ApiState>,
    Owner(owner): Owner,
) -> Result<Json<SettingsView>> {
    settings_view(&state, &owner).await.map(Json)
}

/// `PUT /api/v1/packs/settings`: the budget ceiling and the shared profile fields.
pub(crate) async fn set_settings(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    body: Result<Json<SettingsBody>, JsonRejection>,
) -> Result<Json<SettingsView>> {
    let Json(body) = body?;
    if !(body.budget_ceiling.is_finite() && (0.0..=1000.0).contains(&body.budget_ceiling)) {
        return Err(bad("budget_ceiling", "a number between 0 and 1000"));
    }
    for (field, value) in [("age_band", &body.age_band), ("region", &body.region)] {
        if let Some(v) = value {
            check_name(field, v, 64)?;
        }
    }
    state
        .inner
        .store
        .set_pack_settings(
            &owner,
            &PackSettings {
                budget_ceiling: body.budget_ceiling,
                age_band: body.age_band,
                region: body.region,
            },
        )
        .await
        .map_err(store_error)?;
    settings_view(&state, &owner).await.map(Json)
}

#[derive(Serialize)]
pub(crate) struct EarningsView {
    entries: Vec<EntryView>,
    /// Cents earned per currency, over the entries listed.
    totals_cents: BTreeMap<String, i64>,
    epsilon_spent: f64,
}

#[derive(Serialize)]
struct EntryView {
    pack: String,
    seq: i64,
    epsilon: f64,
    amount_cents: i64,
    currency: String,
    at_ms: i64,
}

/// `GET /api/v1/packs/earnings`: the owner's ledger, newest first.
pub(crate) async fn earnings(
    State(state): State<ApiState>,
    Owner(owner): Owner,
) -> Result<Json<EarningsView>> {
    let entries = state
        .inner
        .store
        .owner_ledger(&owner, MAX_LIST)
        .await
        .map_err(store_error)?;
    let mut totals_cents = BTreeMap::new();
    let mut epsilon_spent = 0.0;
    for e in &entries {
        *totals_cents.entry(e.currency.clone()).or_insert(0) += e.amount_cents;
        epsilon_spent += e.epsilon;
    }
    Ok(Json(EarningsView {
        entries: entries
            .into_iter()
            .map(|e| EntryView {
                pack: e.pack_id,
                seq: e.seq,
                epsilon: e.epsilon,
                amount_cents: e.amount_cents,
                currency: e.currency,
                at_ms: e.at_ms,
            })
            .collect(),
        totals_cents,
        epsilon_spent,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measurement_is_its_name_or_a_name_under_a_base_name() {
        assert!(is_measurement("heart_rate", "heart_rate"));
        assert!(is_measurement("watch-1/heart_rate", "heart_rate"));
        assert!(!is_measurement("resting_heart_rate", "heart_rate"));
        assert!(!is_measurement("heart_rate/max", "heart_rate"));
    }

    #[test]
    fn days_round_trip_through_dates() {
        for (s, d) in [
            ("1970-01-01", 0),
            ("2000-02-29", 11_016),
            ("2026-12-06", 20_793),
        ] {
            assert_eq!(parse_day("from", s).unwrap(), d, "{s}");
            assert_eq!(day_string(d), s);
        }
        for bad_date in [
            "2026-02-29",
            "2026-13-01",
            "26-1-1x",
            "2026/01/01",
            "1969-12-31",
        ] {
            assert!(parse_day("from", bad_date).is_err(), "{bad_date}");
        }
    }
}
