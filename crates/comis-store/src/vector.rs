//! Embeddings: storage encoding, cosine similarity and reciprocal rank fusion with BM25.
//!
//! The store never calls an embedding provider (that is network I/O, done by the agent): a
//! caller with a provider passes the vector of a memory when writing it, and the vector of the
//! query when searching. Without vectors, search is full-text only.
//!
//! Guarantees: a stored vector has 1..=[`MAX_DIMS`] finite components and unit length (it is
//! normalized on the way in), so cosine similarity is a dot product; vectors of another
//! dimension than the query's are skipped, never compared. Fusion follows the original:
//! RRF with k = [`RRF_K`], weight 1.0 for the full-text rank and [`VECTOR_WEIGHT`] for the
//! vector rank.
//!
//! Does not: index vectors. Vector search scans the agent's embedded memories (linear in
//! their number), which is fine for the tens of thousands of memories one agent has.

use crate::{Result, StoreError};

/// Largest accepted embedding dimension.
pub const MAX_DIMS: usize = 4096;
/// The RRF constant.
pub const RRF_K: f64 = 60.0;
/// Weight of the full-text rank in RRF.
pub const FTS_WEIGHT: f64 = 1.0;
/// Weight of the vector rank in RRF.
pub const VECTOR_WEIGHT: f64 = 1.5;

/// Validates and normalizes `v` to unit length.
///
/// # Errors
/// [`StoreError::Invalid`] for an empty, oversized, non-finite or zero vector.
pub fn normalize(v: &[f32]) -> Result<Vec<f32>> {
    let bad = |reason: String| StoreError::Invalid {
        what: "embedding",
        reason,
    };
    if v.is_empty() || v.len() > MAX_DIMS {
        return Err(bad(format!(
            "it has {} dimensions; 1 to {MAX_DIMS} are accepted",
            v.len()
        )));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(bad("it has a NaN or infinite component".into()));
    }
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if !norm.is_normal() {
        return Err(bad("it has zero length".into()));
    }
    // Narrowing back to f32 is the storage precision; the norm is > 0 and finite.
    #[allow(clippy::cast_possible_truncation)]
    Ok(v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

/// Little-endian f32 bytes.
pub fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`encode`]; `None` if the length is not a multiple of 4.
pub fn decode(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Dot product of a unit query with the encoded unit vector `stored`; `None` on a dimension
/// mismatch.
pub fn similarity(query: &[f32], stored: &[u8]) -> Option<f64> {
    if stored.len() != query.len() * 4 {
        return None;
    }
    Some(
        stored
            .chunks_exact(4)
            .zip(query)
            .map(|(c, q)| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])) * f64::from(*q))
            .sum(),
    )
}

/// RRF score of an item at 1-based ranks in the two lists (absent = contributes nothing).
pub fn rrf(fts_rank: Option<usize>, vector_rank: Option<usize>) -> f64 {
    let term = |rank: Option<usize>, w: f64| {
        rank.map_or(0.0, |r| {
            // Ranks are small (bounded by the candidate limit); precision loss is irrelevant.
            #[allow(clippy::cast_precision_loss)]
            let r = r as f64;
            w / (RRF_K + r)
        })
    };
    term(fts_rank, FTS_WEIGHT) + term(vector_rank, VECTOR_WEIGHT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn normalizes_and_refuses() {
        let v = normalize(&[3.0, 4.0]).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        for bad in [
            vec![],
            vec![0.0, 0.0],
            vec![f32::NAN],
            vec![f32::INFINITY, 1.0],
        ] {
            assert!(normalize(&bad).is_err(), "{bad:?}");
        }
        assert!(normalize(&vec![1.0; MAX_DIMS + 1]).is_err());
    }

    #[test]
    fn encoding_round_trips_and_compares() {
        let v = normalize(&[1.0, 2.0, 3.0]).unwrap();
        let bytes = encode(&v);
        assert_eq!(decode(&bytes).unwrap(), v);
        assert!(decode(&bytes[1..]).is_none());
        assert!((similarity(&v, &bytes).unwrap() - 1.0).abs() < 1e-6);
        assert!(similarity(&v[..2], &bytes).is_none());
    }

    #[test]
    fn rrf_prefers_both_lists_and_weights_vectors() {
        assert!(rrf(Some(1), Some(1)) > rrf(Some(1), None));
        assert!(rrf(None, Some(1)) > rrf(Some(1), None));
        assert_eq!(rrf(None, None), 0.0);
    }
}
