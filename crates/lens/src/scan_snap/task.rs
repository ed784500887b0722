//! The synthetic next-token task with co-occurrence structure.
//!
//! Vocabulary layout: `[queries | distinctive tokens, class by class | common tokens]`.
//! A sequence is `context_len` context tokens followed by one query token; its
//! label (the next token) is a class `c`. Each context token is, with
//! probability `distinct_prob`, one of class `c`'s distinctive tokens
//! (uniformly), otherwise one of the common tokens (uniformly), which occur
//! with every class alike. Order carries no information (the model has no
//! positional encoding), so the only signal is *which* tokens co-occur with
//! the query: attention must learn to look at the distinctive ones.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Task shape. See the module docs for what each count means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// Number of next-token classes (labels).
    pub n_classes: usize,
    /// Distinctive context tokens per class (each occurs with one class only).
    pub distinct_per_class: usize,
    /// Common context tokens, shared by all classes.
    pub n_common: usize,
    /// Number of distinct query tokens (the last token); the class does not depend on it.
    pub n_queries: usize,
    /// Context tokens before the query.
    pub context_len: usize,
    /// Probability that a context token is distinctive rather than common.
    pub distinct_prob: f64,
    /// Training set size in sequences; 0 = fresh samples every step (infinite data).
    pub train_size: usize,
    /// Held-out sequences drawn from the true distribution for measurements.
    pub eval_size: usize,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            n_classes: 4,
            distinct_per_class: 4,
            n_common: 6,
            n_queries: 1,
            context_len: 8,
            distinct_prob: 0.5,
            train_size: 0,
            eval_size: 512,
        }
    }
}

/// What a vocabulary entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The k-th query token.
    Query(usize),
    /// A distinctive token of this class.
    Distinct(usize),
    /// A common token.
    Common,
}

impl TokenKind {
    /// Code stored in HDF5: 0 query, 1 distinctive, 2 common.
    pub fn code(self) -> i32 {
        match self {
            TokenKind::Query(_) => 0,
            TokenKind::Distinct(_) => 1,
            TokenKind::Common => 2,
        }
    }
}

/// A batch of sequences: `tokens` is row-major `[n, seq_len]`, query last.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Tokens `[n, seq_len]`, row-major.
    pub tokens: Vec<i64>,
    /// The class of each sequence `[n]`.
    pub labels: Vec<i64>,
    /// Sequences.
    pub n: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
}

impl Batch {
    /// Sequence `i`.
    pub fn row(&self, i: usize) -> &[i64] {
        &self.tokens[i * self.seq_len..(i + 1) * self.seq_len]
    }
    /// Rows `idx` of this batch as a new batch.
    pub fn select(&self, idx: &[usize]) -> Batch {
        let mut tokens = Vec::with_capacity(idx.len() * self.seq_len);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            tokens.extend_from_slice(self.row(i));
            labels.push(self.labels[i]);
        }
        Batch { tokens, labels, n: idx.len(), seq_len: self.seq_len }
    }
}

#[derive(Debug, Clone)]
/// The toy next-token task of Tian et al. 2023.
pub struct Task {
    /// Its settings.
    pub cfg: TaskConfig,
}

impl Task {
    /// The task of `cfg`.
    pub fn new(cfg: TaskConfig) -> Task {
        Task { cfg }
    }
    /// Tokens in the vocabulary: queries, then distinctive tokens by class, then common tokens.
    pub fn vocab_size(&self) -> usize {
        self.cfg.n_queries + self.cfg.n_classes * self.cfg.distinct_per_class + self.cfg.n_common
    }
    /// Context plus the query.
    pub fn seq_len(&self) -> usize {
        self.cfg.context_len + 1
    }
    /// What `token` is.
    pub fn kind(&self, token: usize) -> TokenKind {
        let c = &self.cfg;
        let nd = c.n_classes * c.distinct_per_class;
        if token < c.n_queries {
            TokenKind::Query(token)
        } else if token < c.n_queries + nd {
            TokenKind::Distinct((token - c.n_queries) / c.distinct_per_class)
        } else {
            TokenKind::Common
        }
    }
    /// The kind of every token.
    pub fn kinds(&self) -> Vec<TokenKind> {
        (0..self.vocab_size()).map(|t| self.kind(t)).collect()
    }

    /// Draw `n` sequences from the true distribution.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Batch {
        let c = &self.cfg;
        let l = self.seq_len();
        let mut tokens = Vec::with_capacity(n * l);
        let mut labels = Vec::with_capacity(n);
        let first_common = c.n_queries + c.n_classes * c.distinct_per_class;
        for _ in 0..n {
            let class = rng.gen_range(0..c.n_classes);
            for _ in 0..c.context_len {
                let t = if c.n_common == 0 || rng.gen_bool(c.distinct_prob) {
                    c.n_queries + class * c.distinct_per_class + rng.gen_range(0..c.distinct_per_class)
                } else {
                    first_common + rng.gen_range(0..c.n_common)
                };
                tokens.push(t as i64);
            }
            tokens.push(rng.gen_range(0..c.n_queries) as i64);
            labels.push(class as i64);
        }
        Batch { tokens, labels, n, seq_len: l }
    }

    /// Class purity of each vocabulary token in a batch: max over classes of
    /// the share of its occurrences that come with that class (1/K for a
    /// token spread evenly, 1 for a token seen with one class only, NaN if
    /// the token never occurs). Common tokens with high purity in a small
    /// training set are accidental co-occurrences.
    pub fn purity(&self, batch: &Batch) -> Vec<f32> {
        let k = self.cfg.n_classes;
        let v = self.vocab_size();
        let mut counts = vec![0usize; v * k];
        for i in 0..batch.n {
            let y = batch.labels[i] as usize;
            for &t in &batch.row(i)[..batch.seq_len - 1] {
                counts[t as usize * k + y] += 1;
            }
        }
        (0..v)
            .map(|t| {
                let row = &counts[t * k..(t + 1) * k];
                let tot: usize = row.iter().sum();
                if tot == 0 {
                    f32::NAN
                } else {
                    row.iter().max().map_or(f32::NAN, |&m| m as f32 / tot as f32)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn layout_and_sampling_follow_the_structure() {
        let task = Task::new(TaskConfig { n_queries: 2, ..Default::default() });
        assert_eq!(task.vocab_size(), 2 + 16 + 6);
        assert_eq!(task.kind(1), TokenKind::Query(1));
        assert_eq!(task.kind(2), TokenKind::Distinct(0));
        assert_eq!(task.kind(17), TokenKind::Distinct(3));
        assert_eq!(task.kind(18), TokenKind::Common);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let b = task.sample(200, &mut rng);
        let mut n_distinct = 0;
        for i in 0..b.n {
            let row = b.row(i);
            assert!(matches!(task.kind(row[8] as usize), TokenKind::Query(_)));
            for &t in &row[..8] {
                match task.kind(t as usize) {
                    TokenKind::Distinct(c) => {
                        assert_eq!(c as i64, b.labels[i]);
                        n_distinct += 1
                    }
                    TokenKind::Common => {}
                    TokenKind::Query(_) => panic!("query token in context"),
                }
            }
        }
        let share = n_distinct as f64 / 1600.0;
        assert!((share - 0.5).abs() < 0.05, "{share}");
        let p = task.purity(&b);
        assert!(p[2..18].iter().all(|&x| x == 1.0));
        assert!(p[18..].iter().all(|&x| x < 0.5));
    }
}
