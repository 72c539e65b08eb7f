//! Deterministic sample documents in the shape of an image library.

use crate::types::DocId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// How a sample document is broken on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Broken {
    /// No original in S3.
    MissingOriginal,
    /// The original is not JSON.
    InvalidOriginalJson,
    /// The original has a field of the wrong type.
    WrongOriginalTypes,
    /// The edits item has an attribute of the wrong type.
    WrongEditTypes,
    /// A value the mapping rejects (an invalid date).
    MappingRejects,
}

const KINDS: [Broken; 5] = [
    Broken::MissingOriginal,
    Broken::InvalidOriginalJson,
    Broken::WrongOriginalTypes,
    Broken::WrongEditTypes,
    Broken::MappingRejects,
];

/// One generated document, as each store holds it.
#[derive(Debug, Clone)]
pub struct SampleDoc {
    /// Its id.
    pub id: DocId,
    /// Its version in DynamoDB.
    pub version: u64,
    /// The S3 original (absent when broken that way).
    pub original: Option<Vec<u8>>,
    /// The DynamoDB item, as JSON.
    pub item: Map<String, Value>,
    /// The legacy document in the Current index.
    pub legacy: Value,
    /// How it is broken, if it is.
    pub broken: Option<Broken>,
}

const WORDS: &[&str] = &[
    "harbour",
    "storm",
    "election",
    "market",
    "festival",
    "river",
    "bridge",
    "protest",
    "summit",
    "garden",
    "train",
    "winter",
    "portrait",
    "stadium",
    "night",
    "coast",
    "parliament",
    "mountain",
    "street",
    "school",
];
const PEOPLE: &[&str] = &[
    "Ann Lee",
    "Bo Chen",
    "Cara Diaz",
    "Dev Patel",
    "Eli Novak",
    "Fay Ode",
];
const CATEGORIES: &[&str] = &[
    "staff-photographer",
    "agency",
    "handout",
    "screengrab",
    "commissioned",
];
const LABELS: &[&str] = &[
    "sport",
    "news",
    "culture",
    "front-page",
    "archive",
    "weather",
];

fn rng_for(seed: u64, i: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn words(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

fn date(rng: &mut ChaCha8Rng) -> String {
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        rng.random_range(2012..2026),
        rng.random_range(1..13),
        rng.random_range(1..29),
        rng.random_range(0..24),
        rng.random_range(0..60),
        rng.random_range(0..60)
    )
}

/// A realistic original for `id`.
pub fn original(rng: &mut ChaCha8Rng, id: &DocId) -> Value {
    let (w, h) = (
        rng.random_range(800..6000u32),
        rng.random_range(600..4000u32),
    );
    json!({
        "id": id,
        "uploadTime": date(rng),
        "uploadedBy": format!("{}@example.com", PEOPLE[rng.random_range(0..PEOPLE.len())].to_lowercase().replace(' ', ".")),
        "source": {
            "file": format!("s3://images/{}.jpg", crate::index::client::segment(id.as_str())),
            "mimeType": if rng.random_bool(0.9) { "image/jpeg" } else { "image/png" },
            "size": rng.random_range(50_000..20_000_000u64),
            "width": w, "height": h
        },
        "metadata": {
            "title": words(rng, 3),
            "description": words(rng, 12),
            "byline": PEOPLE[rng.random_range(0..PEOPLE.len())],
            "credit": if rng.random_bool(0.5) { "Ferry Photos" } else { "Agency X" },
            "keywords": [WORDS[rng.random_range(0..WORDS.len())], WORDS[rng.random_range(0..WORDS.len())]],
            "dateTaken": date(rng)
        },
        "usageRights": { "category": CATEGORIES[rng.random_range(0..CATEGORIES.len())] },
        "fileMetadata": { "exif": { "iso": rng.random_range(100..6400u32), "make": "Canon", "fNumber": 2.8 } }
    })
}

/// Random user edits (attributes of the DynamoDB item, without id/version).
pub fn edits(rng: &mut ChaCha8Rng) -> Map<String, Value> {
    let mut m = Map::new();
    if rng.random_bool(0.4) {
        m.insert("metadata".into(), json!({ "title": words(rng, 4) }));
    }
    if rng.random_bool(0.5) {
        let n = rng.random_range(1..4);
        m.insert(
            "labels".into(),
            json!((0..n)
                .map(|_| LABELS[rng.random_range(0..LABELS.len())])
                .collect::<Vec<_>>()),
        );
    }
    if rng.random_bool(0.1) {
        m.insert("archived".into(), json!(true));
    }
    if rng.random_bool(0.2) {
        m.insert(
            "usageRights".into(),
            json!({ "category": "agency", "restrictions": "no syndication" }),
        );
    }
    m.insert("lastModified".into(), json!(date(rng)));
    m.insert("lastModifiedBy".into(), json!("editor@example.com"));
    m
}

/// The generated id of document `i`: mostly `<prefix><i>`, and every 97th
/// one with path characters in it, as real ids sometimes have.
pub fn id_of(prefix: &str, i: usize) -> DocId {
    let raw = if i % 97 == 13 {
        format!("{prefix}dir/{i:06}?v=1#x%")
    } else {
        format!("{prefix}{i:06}")
    };
    DocId::parse(raw).unwrap_or_else(|_| {
        DocId::parse(format!("doc{i}")).unwrap_or_else(|_| unreachable!("a plain id is valid"))
    })
}

/// Generates document `i` of `count`, `broken` of which are broken.
pub fn sample(seed: u64, i: usize, count: usize, broken: usize, prefix: &str) -> SampleDoc {
    let id = id_of(prefix, i);
    let mut rng = rng_for(seed, i as u64);
    let version = rng.random_range(1..4u64);
    let mut original = original(&mut rng, &id);
    let mut item = edits(&mut rng);
    let broken_kind = (broken > 0)
        .then(|| count / broken)
        .filter(|s| *s > 0)
        .and_then(|step| {
            (i % step == step / 2 && i / step < broken).then(|| KINDS[(i / step) % KINDS.len()])
        });
    let legacy = json!({
        "id": id, "version": version, "uploadTime": original["uploadTime"], "uploadedBy": original["uploadedBy"],
        "metadata": { "title": original["metadata"]["title"], "byline": original["metadata"]["byline"] },
    });
    let mut body = Some(original.to_string().into_bytes());
    match broken_kind {
        Some(Broken::MissingOriginal) => body = None,
        Some(Broken::InvalidOriginalJson) => {
            body = Some(b"{\"uploadTime\": \"2020-01-01T00:00:00Z\", trailing garbage".to_vec())
        }
        Some(Broken::WrongOriginalTypes) => {
            original["source"]["size"] = json!("twelve megabytes");
            body = Some(original.to_string().into_bytes());
        }
        Some(Broken::WrongEditTypes) => {
            item.insert("labels".into(), json!(42));
        }
        Some(Broken::MappingRejects) => {
            original["metadata"]["dateTaken"] = json!("the summer of 2019");
            body = Some(original.to_string().into_bytes());
        }
        None => {}
    }
    item.insert("id".into(), json!(id));
    item.insert("version".into(), json!(version));
    SampleDoc {
        id,
        version,
        original: body,
        item,
        legacy,
        broken: broken_kind,
    }
}

/// A fresh random generator for the simulated pipelines.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_deterministic_and_broken_ones_spread() {
        let a: Vec<_> = (0..100).map(|i| sample(7, i, 100, 5, "t-")).collect();
        let b: Vec<_> = (0..100).map(|i| sample(7, i, 100, 5, "t-")).collect();
        assert_eq!(
            a.iter().map(|d| d.original.clone()).collect::<Vec<_>>(),
            b.iter().map(|d| d.original.clone()).collect::<Vec<_>>()
        );
        let broken: Vec<_> = a.iter().filter_map(|d| d.broken).collect();
        assert_eq!(broken.len(), 5);
        assert_eq!(broken, KINDS.to_vec());
    }
}
