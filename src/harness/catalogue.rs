//! The requirement catalogue: every requirement ID a scenario may cite in `covers`, with
//! its normative level, the component it binds and the spec section it comes from.
//!
//! The data lives in `requirements.toml` at the repository root and is compiled into the
//! binary, so `fedcheck coverage` and the scenario loader agree on one list.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// The catalogue file, compiled in.
const BUILTIN: &str = include_str!("../../requirements.toml");

/// How binding a requirement is: the strongest of the levels listed for it.
///
/// RFC 2119 keywords keep their weight; RECOMMENDED counts as SHOULD and OPTIONAL as MAY
/// (RFC 2119 §3, §5). Vendor-documented behaviour (V-MUST …) ranks like its keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Informative only: never a pass/fail gate.
    Info,
    May,
    Should,
    Must,
}

/// Level keywords as written in the catalogue, longest first so `MUST NOT` wins over `MUST`.
const LEVEL_WORDS: &[(&str, Level)] = &[
    ("V-SHOULD", Level::Should),
    ("V-MUST", Level::Must),
    ("V-MAY", Level::May),
    ("MUST NOT", Level::Must),
    ("SHOULD NOT", Level::Should),
    ("RECOMMENDED", Level::Should),
    ("OPTIONAL", Level::May),
    ("SHALL", Level::Must),
    ("MUST", Level::Must),
    ("SHOULD", Level::Should),
    ("MAY", Level::May),
    ("INFO", Level::Info),
];

impl Level {
    /// The strongest level named in a level text such as `"SHOULD (7248) / MUST (8048)"`.
    /// Parenthesised remarks are ignored; `None` when no alternative names a known level.
    pub fn parse_strongest(text: &str) -> Option<Level> {
        let mut best: Option<Level> = None;
        for alt in text.split('/') {
            let word = alt.split('(').next().unwrap_or("").trim();
            let level = LEVEL_WORDS
                .iter()
                .find(|(w, _)| *w == word)
                .map(|(_, l)| *l)?;
            best = Some(best.map_or(level, |b| b.max(level)));
        }
        best
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::May => "MAY",
            Level::Should => "SHOULD",
            Level::Must => "MUST",
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One catalogue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Stable ID, e.g. `STR-02`.
    pub id: String,
    /// Strongest level of `levels_text`.
    pub level: Level,
    /// The level as written, e.g. `"MUST / SHOULD"`.
    pub levels_text: String,
    /// Component tag: `PX`, `GW`, `GW+PX`, `RX`, `SP`, …
    pub comp: String,
    /// Spec sections, e.g. `"RFC 6120 §4.7.1–4.7.5"`.
    pub source: String,
    /// Short one-line summary.
    pub title: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("requirements catalogue: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("requirements catalogue: {id}: {message}")]
    Entry { id: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    req: Vec<RawReq>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReq {
    id: String,
    level: String,
    comp: String,
    source: String,
    title: String,
}

/// The parsed catalogue, in file order.
#[derive(Debug, Clone)]
pub struct Catalogue {
    reqs: Vec<Requirement>,
    by_id: HashMap<String, usize>,
}

impl Catalogue {
    /// The compiled-in catalogue. Parsed on first use and cached; the result is a copy
    /// the caller owns (e.g. to share behind an `Arc`). An error means `requirements.toml`
    /// is broken, which the unit tests catch before a release.
    pub fn builtin() -> Result<Catalogue, CatalogueError> {
        static CAT: OnceLock<Catalogue> = OnceLock::new();
        if let Some(c) = CAT.get() {
            return Ok(c.clone());
        }
        let c = Catalogue::parse(BUILTIN)?;
        Ok(CAT.get_or_init(|| c).clone())
    }

    /// Parse a catalogue file; rejects unknown levels, malformed or duplicate IDs and empty
    /// fields.
    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let file: File = toml::from_str(text)?;
        let mut reqs = Vec::with_capacity(file.req.len());
        let mut by_id = HashMap::new();
        for r in file.req {
            let bad = |message: &str| CatalogueError::Entry {
                id: r.id.clone(),
                message: message.to_string(),
            };
            if !valid_id(&r.id) {
                return Err(bad(
                    "ID must be PREFIX-NN (upper-case letters, '-', digits)",
                ));
            }
            if r.comp.trim().is_empty() || r.source.trim().is_empty() || r.title.trim().is_empty() {
                return Err(bad("comp, source and title must not be empty"));
            }
            let level = Level::parse_strongest(&r.level).ok_or_else(|| bad("unknown level"))?;
            if by_id.insert(r.id.clone(), reqs.len()).is_some() {
                return Err(bad("duplicate ID"));
            }
            reqs.push(Requirement {
                id: r.id,
                level,
                levels_text: r.level,
                comp: r.comp,
                source: r.source,
                title: r.title,
            });
        }
        Ok(Catalogue { reqs, by_id })
    }

    pub fn get(&self, id: &str) -> Option<&Requirement> {
        self.by_id.get(id).and_then(|&i| self.reqs.get(i))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// All requirements, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Requirement> {
        self.reqs.iter()
    }

    /// The strongest level among `ids` (unknown IDs ignored): a failed step whose
    /// requirements are all SHOULD/MAY is a warning, not a failure (docs/scenarios.md
    /// "Verdicts").
    pub fn strongest<S: AsRef<str>>(&self, ids: &[S]) -> Option<Level> {
        ids.iter()
            .filter_map(|id| self.get(id.as_ref()))
            .map(|r| r.level)
            .max()
    }

    pub fn len(&self) -> usize {
        self.reqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }
}

/// `ARCH-01`, `ADDRS-06`: upper-case prefix, `-`, two or more digits.
fn valid_id(id: &str) -> bool {
    match id.split_once('-') {
        Some((p, n)) => {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_uppercase())
                && n.len() >= 2
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::collections::HashSet;

    fn builtin() -> Catalogue {
        match Catalogue::builtin() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn builtin_parses_and_is_complete() {
        let cat = builtin();
        assert!(cat.len() >= 150, "only {} requirements", cat.len());
        let mut seen = HashSet::new();
        for r in cat.iter() {
            assert!(seen.insert(r.id.clone()), "duplicate {}", r.id);
            assert!(valid_id(&r.id), "{}", r.id);
            assert!(
                !r.title.is_empty() && r.title.chars().count() <= 90,
                "{}: title",
                r.id
            );
            assert!(!r.title.contains('\n'), "{}: title", r.id);
        }
        assert_eq!(
            Catalogue::parse(BUILTIN).map(|c| c.len()).ok(),
            Some(cat.len())
        );
    }

    #[test]
    fn lookup_and_order() {
        let cat = builtin();
        let r = cat.get("STR-02").map(|r| (r.level, r.comp.as_str()));
        assert_eq!(r, Some((Level::Must, "PX")));
        assert!(cat.get("STR-13").is_none(), "gaps in a series stay gaps");
        assert_eq!(cat.iter().next().map(|r| r.id.as_str()), Some("ARCH-01"));
        let db = cat.iter().position(|r| r.id == "DB-01");
        let str02 = cat.iter().position(|r| r.id == "STR-02");
        assert!(str02 < db);
    }

    #[test]
    fn strongest_of_several() {
        let cat = builtin();
        // ARCH-02 SHOULD, ADDR-06 MAY, STR-02 MUST.
        assert_eq!(cat.strongest(&["ARCH-02", "ADDR-06"]), Some(Level::Should));
        assert_eq!(
            cat.strongest(&["ADDR-06", "STR-02", "NOPE-01"]),
            Some(Level::Must)
        );
        assert_eq!(cat.strongest(&["NOPE-01"]), None);
        assert_eq!(cat.strongest::<&str>(&[]), None);
    }

    #[rstest]
    #[case("MUST", Some(Level::Must))]
    #[case("MUST NOT", Some(Level::Must))]
    #[case("SHALL", Some(Level::Must))]
    #[case("V-MUST", Some(Level::Must))]
    #[case("SHOULD / MUST", Some(Level::Must))]
    #[case("SHOULD (7248) / MUST (8048)", Some(Level::Must))]
    #[case("MAY / SHOULD NOT", Some(Level::Should))]
    #[case("SHOULD (implied)", Some(Level::Should))]
    #[case("RECOMMENDED", Some(Level::Should))]
    #[case("V-SHOULD", Some(Level::Should))]
    #[case("MAY (choice)", Some(Level::May))]
    #[case("OPTIONAL", Some(Level::May))]
    #[case("V-MAY", Some(Level::May))]
    #[case("SHOULD / INFO", Some(Level::Should))]
    #[case("INFO", Some(Level::Info))]
    #[case("MUSTN'T", None)]
    #[case("MUST / PERHAPS", None)]
    #[case("", None)]
    fn level_strongest(#[case] text: &str, #[case] want: Option<Level>) {
        assert_eq!(Level::parse_strongest(text), want);
    }

    #[rstest]
    #[case(
        "[[req]]\nid = \"X-01\"\nlevel = \"MUST\"\ncomp = \"PX\"\nsource = \"s\"\ntitle = \"t\"\n[[req]]\nid = \"X-01\"\nlevel = \"MUST\"\ncomp = \"PX\"\nsource = \"s\"\ntitle = \"t\"\n",
        "duplicate"
    )]
    #[case(
        "[[req]]\nid = \"x-1\"\nlevel = \"MUST\"\ncomp = \"PX\"\nsource = \"s\"\ntitle = \"t\"\n",
        "ID must"
    )]
    #[case(
        "[[req]]\nid = \"X-01\"\nlevel = \"WOULD\"\ncomp = \"PX\"\nsource = \"s\"\ntitle = \"t\"\n",
        "unknown level"
    )]
    #[case(
        "[[req]]\nid = \"X-01\"\nlevel = \"MUST\"\ncomp = \"PX\"\nsource = \"s\"\ntitle = \" \"\n",
        "empty"
    )]
    #[case(
        "[[req]]\nid = \"X-01\"\nlevel = \"MUST\"\ncomp = \"PX\"\nsource = \"s\"\ntitle = \"t\"\nextra = 1\n",
        "unknown field"
    )]
    fn bad_catalogues(#[case] text: &str, #[case] want: &str) {
        match Catalogue::parse(text) {
            Ok(_) => panic!("accepted"),
            Err(e) => assert!(e.to_string().contains(want), "{e}"),
        }
    }
}
