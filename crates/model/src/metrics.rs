//! Accuracy, macro-F1 and the confusion matrix of a set of predictions.

use serde::{Deserialize, Serialize};

use crate::motion::Activity;

/// How well predictions match the truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub windows: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// `confusion[true][predicted]`, in [`Activity::ALL`] order.
    pub confusion: Vec<Vec<u64>>,
}

impl Scores {
    pub fn of(truth: &[Activity], predicted: &[Activity]) -> Scores {
        let k = Activity::ALL.len();
        let mut confusion = vec![vec![0u64; k]; k];
        for (t, p) in truth.iter().zip(predicted) {
            confusion[t.index()][p.index()] += 1;
        }
        let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
        let mut f1_sum = 0.0;
        for (i, row) in confusion.iter().enumerate() {
            let tp = row[i] as f64;
            let actual: u64 = row.iter().sum();
            let predicted: u64 = confusion.iter().map(|r| r[i]).sum();
            let denominator = actual as f64 + predicted as f64;
            f1_sum += if denominator > 0.0 {
                2.0 * tp / denominator
            } else {
                0.0
            };
        }
        let n = truth.len().max(1) as f64;
        Scores {
            windows: truth.len(),
            accuracy: correct as f64 / n,
            macro_f1: f1_sum / k as f64,
            confusion,
        }
    }

    /// The confusion matrix as a table, rows the truth.
    pub fn confusion_table(&self) -> String {
        let mut out = format!("{:>12}", "true \\ pred");
        for a in Activity::ALL {
            out.push_str(&format!("{:>11}", a.name()));
        }
        out.push('\n');
        for a in Activity::ALL {
            out.push_str(&format!("{:>12}", a.name()));
            for v in &self.confusion[a.index()] {
                out.push_str(&format!("{v:>11}"));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Activity::*;

    #[test]
    fn scores_count_the_confusion() {
        let truth = [Walking, Walking, Sitting, Standing];
        let predicted = [Walking, Upstairs, Sitting, Sitting];
        let s = Scores::of(&truth, &predicted);
        assert_eq!(s.accuracy, 0.5);
        assert_eq!(s.confusion[Walking.index()][Upstairs.index()], 1);
        assert_eq!(s.confusion[Standing.index()][Sitting.index()], 1);
        // F1: walking 2/3, upstairs 0, sitting 2/3, standing 0, downstairs and lying 0.
        assert!((s.macro_f1 - (4.0 / 3.0) / 6.0).abs() < 1e-12);
    }
}
