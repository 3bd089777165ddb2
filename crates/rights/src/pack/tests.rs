use super::*;
use crate::noise::laplace_cdf;

fn spec(days: usize) -> ReleaseSpec {
    ReleaseSpec {
        days: (0..days as i64).map(|d| 20_000 + d).collect(),
        lower: 40.0,
        upper: 200.0,
        epsilon: 1.0,
        aggregates: Aggregates {
            count: true,
            mean: true,
            histogram: Some(vec![40.0, 60.0, 80.0, 100.0, 120.0, 200.0]),
            percentiles: vec![50.0, 90.0],
        },
        min_participants: DEFAULT_MIN_PARTICIPANTS,
    }
}

/// `n` participants, each with budget to spare and one value a day: 60 + their index.
fn pool(n: usize, spec: &ReleaseSpec) -> Vec<Participant> {
    (0..n)
        .map(|i| Participant {
            id: format!("p{i}"),
            budget_left: 1e12,
            values: spec.days.iter().map(|&d| (d, 60.0 + i as f64)).collect(),
        })
        .collect()
}

#[test]
fn nine_participants_are_refused_with_the_count_in_the_reason() {
    let spec = spec(3);
    let err = release(&spec, &pool(9, &spec)).unwrap_err();
    assert!(matches!(
        err,
        Refusal::TooFewParticipants {
            included: 9,
            needed: 10,
            ..
        }
    ));
    let reason = err.to_string();
    assert!(
        reason.contains("9 participants") && reason.contains("at least 10"),
        "{reason}"
    );
}

#[test]
fn ten_participants_are_released_with_every_day_and_the_noise_parameters() {
    let spec = spec(3);
    let r = release(&spec, &pool(10, &spec)).unwrap();
    assert_eq!(r.participants, 10);
    assert_eq!(r.included.len(), 10);
    assert!(r.left_out.is_empty());
    assert_eq!(r.days.len(), 3);
    let day = &r.days[0];
    assert!(day.count.is_some() && day.mean.is_some());
    assert_eq!(day.histogram.as_ref().unwrap().len(), 5);
    assert_eq!(day.percentiles.keys().collect::<Vec<_>>(), ["p50", "p90"]);
    // ε split over three vectors (count, sum, histogram), each at most its share.
    assert_eq!(r.noise.len(), 3);
    let spent: f64 = r.noise.values().map(|n| n.epsilon).sum();
    assert!(spent <= spec.epsilon + 1e-12, "spent {spent}");
    // Sensitivities: per day 1 (count), 200 (sum: the largest bound), 2 (histogram), times 3 days.
    assert_eq!(r.noise["count"].sensitivity, 3.0);
    assert_eq!(r.noise["sum"].sensitivity, 600.0);
    assert_eq!(r.noise["histogram"].sensitivity, 6.0);
    let mean = day.mean.unwrap();
    assert!((spec.lower..=spec.upper).contains(&mean), "{mean}");
}

#[test]
fn a_participant_out_of_budget_is_left_out_and_named() {
    let spec = spec(2);
    let mut people = pool(12, &spec);
    people[3].budget_left = 0.5;
    people[7].budget_left = 0.0;
    let r = release(&spec, &people).unwrap();
    assert_eq!(r.participants, 10);
    assert_eq!(r.left_out, ["p3", "p7"]);
    assert!(!r.included.contains(&"p3".to_owned()));

    // One more out of budget and the pool falls under k: refused, naming both counts.
    people[0].budget_left = 0.9;
    let err = release(&spec, &people).unwrap_err();
    assert!(
        matches!(
            err,
            Refusal::TooFewParticipants {
                included: 9,
                left_out: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_participant_without_data_in_the_pack_does_not_count_towards_k() {
    let spec = spec(2);
    let mut people = pool(10, &spec);
    people[4].values.clear();
    let err = release(&spec, &people).unwrap_err();
    assert!(
        matches!(err, Refusal::TooFewParticipants { included: 9, .. }),
        "{err}"
    );
}

#[test]
fn with_a_huge_epsilon_the_figures_are_the_exact_ones() {
    let mut spec = spec(2);
    spec.epsilon = 1e9;
    let r = release(&spec, &pool(10, &spec)).unwrap();
    // Values 60..=69: mean 64.5, all in the bin [60, 80).
    let day = &r.days[1];
    assert!((day.count.unwrap() - 10.0).abs() < 1e-3);
    assert!((day.mean.unwrap() - 64.5).abs() < 1e-3, "{:?}", day.mean);
    let h = day.histogram.as_ref().unwrap();
    assert!((h[1] - 10.0).abs() < 1e-3 && h[0].abs() < 1e-3, "{h:?}");
    let p50 = day.percentiles["p50"];
    assert!((60.0..80.0).contains(&p50), "{p50}");
}

#[test]
fn values_are_clamped_before_they_count() {
    let mut spec = spec(1);
    spec.epsilon = 1e9;
    let mut people = pool(10, &spec);
    // One participant's value of 10,000 counts as the upper bound, 200.
    people[0].values.insert(spec.days[0], 10_000.0);
    let r = release(&spec, &people).unwrap();
    let exact = (200.0 + (61..70).map(f64::from).sum::<f64>()) / 10.0;
    assert!((r.days[0].mean.unwrap() - exact).abs() < 1e-3);
    assert!((r.days[0].histogram.as_ref().unwrap()[4] - 1.0).abs() < 1e-3);
}

#[test]
fn bad_packs_are_refused_before_any_noise() {
    type Break = fn(&mut ReleaseSpec);
    let cases: [(&str, Break); 7] = [
        ("no day", |s| s.days.clear()),
        ("days out of order", |s| s.days.reverse()),
        ("inverted bounds", |s| s.upper = s.lower - 1.0),
        ("ε of 0", |s| s.epsilon = 0.0),
        ("NaN ε", |s| s.epsilon = f64::NAN),
        ("percentiles without a histogram", |s| {
            s.aggregates.histogram = None
        }),
        ("a percentile of 120", |s| {
            s.aggregates.percentiles.push(120.0)
        }),
    ];
    for (what, break_it) in cases {
        let mut s = spec(2);
        break_it(&mut s);
        let people = pool(10, &s);
        assert!(
            matches!(release(&s, &people), Err(Refusal::Invalid(_))),
            "{what}"
        );
    }
}

/// The Kolmogorov–Smirnov statistic of `draws` against `cdf`.
fn ks_statistic(mut draws: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
    draws.sort_by(f64::total_cmp);
    let n = draws.len() as f64;
    draws
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn the_noise_of_10000_draws_follows_the_published_laplace_distribution() {
    // One vector of 10,000 zeros: each element gets its own independent draw,
    // exactly as the days of a release do.
    let (draws, parameters) = noise::laplace(&vec![0.0; 10_000], 2.0, 0.5).unwrap();
    assert!(
        (parameters.scale - 4.0).abs() / 4.0 < 1e-6,
        "{parameters:?}"
    );
    // Critical value of the one-sample KS test at α = 0.001 for n = 10,000: 1.95 / √n.
    let critical = 1.95 / 100.0;
    let d = ks_statistic(draws.clone(), |x| laplace_cdf(x, parameters.scale));
    assert!(
        d < critical,
        "KS statistic {d} ≥ {critical}: the noise is not Laplace({})",
        parameters.scale
    );
    // And the test can tell: the same draws are far from a Laplace of twice the scale.
    let wrong = ks_statistic(draws, |x| laplace_cdf(x, 2.0 * parameters.scale));
    assert!(
        wrong > 5.0 * critical,
        "KS against the wrong scale only {wrong}"
    );
}

#[test]
fn bins_and_percentiles() {
    let edges = [0.0, 10.0, 20.0, 30.0];
    assert_eq!(bin_of(&edges, 0.0), 0);
    assert_eq!(bin_of(&edges, 9.99), 0);
    assert_eq!(bin_of(&edges, 10.0), 1);
    assert_eq!(bin_of(&edges, 30.0), 2);
    let h = [10.0, 0.0, 10.0];
    assert_eq!(percentile(&edges, &h, 25.0), 5.0);
    assert_eq!(percentile(&edges, &h, 75.0), 25.0);
    assert_eq!(percentile(&edges, &[0.0, 0.0, 0.0], 50.0), 15.0);
}
