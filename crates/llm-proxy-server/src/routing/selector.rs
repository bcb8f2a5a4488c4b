//! Routing selector language: parses and validates `backend:model` leaves joined by `|`, `^` or
//! `!` (with `[k=v]` annotations) into a [`Selector`], and prints selectors back canonically.
//!
//! The grammar is flat: one operator per selector, no nesting.
//!
//! ```text
//! selector   = branch *( op branch )          ; every `op` must be the same character
//! op         = "|" (failover) / "^" (weighted) / "!" (parallel race)
//! branch     = *( "[" item *( "," item ) "]" ) leaf
//! item       = key [ "=" value ]
//! leaf       = [ backend ":" ] model [ "?" param *( "&" param ) ]
//! backend    = type [ "." instance ]
//! ```
//!
//! A leaf names a backend iff its first `:` comes before its first `/` (in the part before `?`),
//! except for the reserved model namespaces `alias:` and `auto:`. Parameter keys and values are
//! percent-decoded; a raw `|`, `^`, `!`, `[` or `]` is always structure, never data.

use std::fmt::{self, Write as _};

/// Low-cardinality label of a [`SelectorError`], for metrics, logs and API error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorErrorCode {
    SyntaxError,
    UnsupportedConstruct,
    InvalidWeight,
    InvalidMaxContext,
    InvalidHandicap,
    InvalidTtftTimeout,
    InvalidLeaf,
    SelectorTooLong,
    TooManyLeaves,
    TooManyRaceLegs,
}

impl SelectorErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SyntaxError => "syntax_error",
            Self::UnsupportedConstruct => "unsupported_construct",
            Self::InvalidWeight => "invalid_weight",
            Self::InvalidMaxContext => "invalid_max_context",
            Self::InvalidHandicap => "invalid_handicap",
            Self::InvalidTtftTimeout => "invalid_ttft_timeout",
            Self::InvalidLeaf => "invalid_leaf",
            Self::SelectorTooLong => "selector_too_long",
            Self::TooManyLeaves => "too_many_leaves",
            Self::TooManyRaceLegs => "too_many_race_legs",
        }
    }
}

impl fmt::Display for SelectorErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a selector was rejected. `position` is a byte offset into the parsed input (always on a
/// char boundary) pointing at the offending part, when one can be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    pub code: SelectorErrorCode,
    pub message: String,
    pub position: Option<usize>,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(position) = self.position {
            write!(f, " (at byte {position})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SelectorError {}

impl SelectorError {
    fn at(code: SelectorErrorCode, position: usize, message: String) -> Self {
        Self {
            code,
            message,
            position: Some(position),
        }
    }
}

/// The shape of a selector, named by its operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorKind {
    Single,
    Failover,
    Weighted,
    Parallel,
}

impl SelectorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Failover => "failover",
            Self::Weighted => "weighted",
            Self::Parallel => "parallel",
        }
    }

    /// The character joining the leaves; `None` for a single leaf.
    pub const fn operator(self) -> Option<char> {
        match self {
            Self::Single => None,
            Self::Failover => Some('|'),
            Self::Weighted => Some('^'),
            Self::Parallel => Some('!'),
        }
    }

    const fn from_operator(operator: char) -> Option<Self> {
        match operator {
            '|' => Some(Self::Failover),
            '^' => Some(Self::Weighted),
            '!' => Some(Self::Parallel),
            _ => None,
        }
    }

    const fn describe(self) -> &'static str {
        match self {
            Self::Single => "a single-leaf selector",
            Self::Failover => "a failover (`|`) selector",
            Self::Weighted => "a weighted (`^`) selector",
            Self::Parallel => "a parallel (`!`) selector",
        }
    }
}

/// A parsed, validated selector. Composite variants always hold at least two leaves.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Single(Leaf),
    /// Try leaves left to right on pre-output failure.
    Failover(Vec<Leaf>),
    /// Pick a leaf by weight; re-roll among the rest on pre-output failure.
    Weighted(Vec<Leaf>),
    /// Race all legs; the first with meaningful output wins.
    Parallel(Vec<Leaf>),
}

impl Selector {
    pub fn kind(&self) -> SelectorKind {
        match self {
            Self::Single(_) => SelectorKind::Single,
            Self::Failover(_) => SelectorKind::Failover,
            Self::Weighted(_) => SelectorKind::Weighted,
            Self::Parallel(_) => SelectorKind::Parallel,
        }
    }

    pub fn leaves(&self) -> &[Leaf] {
        match self {
            Self::Single(leaf) => std::slice::from_ref(leaf),
            Self::Failover(leaves) | Self::Weighted(leaves) | Self::Parallel(leaves) => leaves,
        }
    }
}

/// Prints the canonical form: one merged annotation block per leaf, parameters re-encoded.
/// For any parsed selector `s`, `parse(&s.to_string()) == Ok(s)`.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = self.kind().operator();
        for (index, leaf) in self.leaves().iter().enumerate() {
            if let (Some(separator), true) = (separator, index > 0) {
                f.write_char(separator)?;
            }
            write!(f, "{leaf}")?;
        }
        Ok(())
    }
}

/// One routing target: an optional explicit backend, a model, URI params and annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// `None` for model-only leaves (`gpt-4o`, `vendor/model:variant`, `alias:x`, `auto:x`).
    pub backend: Option<BackendRef>,
    pub model: String,
    /// Percent-decoded `?k=v` pairs in input order; duplicates are kept for the caller to judge.
    pub params: Vec<(String, String)>,
    pub annotations: Annotations,
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.annotations)?;
        if let Some(backend) = &self.backend {
            write!(f, "{backend}:")?;
        }
        f.write_str(&self.model)?;
        for (index, (key, value)) in self.params.iter().enumerate() {
            f.write_char(if index == 0 { '?' } else { '&' })?;
            write_percent_encoded(f, key)?;
            f.write_char('=')?;
            write_percent_encoded(f, value)?;
        }
        Ok(())
    }
}

/// A backend family (`openai`) or one named instance of it (`openai.1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendRef {
    pub backend_type: String,
    pub instance: Option<String>,
}

impl BackendRef {
    /// The id as written in selectors and config keys: `openai` or `openai.1`.
    pub fn id(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for BackendRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.backend_type)?;
        if let Some(instance) = &self.instance {
            write!(f, ".{instance}")?;
        }
        Ok(())
    }
}

/// Merged `[k=v]` blocks of one leaf. Which keys may be set depends on the [`SelectorKind`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    /// Weighted only; positive and finite. Absent means 1.0.
    pub weight: Option<f64>,
    /// Single, failover and weighted; the branch is skipped when the request is larger.
    pub max_context: Option<u64>,
    /// Weighted only; at most one branch; forced for a session's first request.
    pub first: bool,
    /// Weighted only; at most one branch; never together with `first` on one branch.
    pub thinker: bool,
    /// Parallel only; seconds, non-negative and finite.
    pub handicap: Option<f64>,
    /// Parallel only; seconds, positive and finite.
    pub ttft_timeout: Option<f64>,
}

impl fmt::Display for Annotations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = Vec::new();
        if self.first {
            items.push("first".to_owned());
        }
        if self.thinker {
            items.push("thinker".to_owned());
        }
        if let Some(weight) = self.weight {
            items.push(format!("weight={}", format_number(weight)));
        }
        if let Some(max_context) = self.max_context {
            items.push(format!("max_context={max_context}"));
        }
        if let Some(handicap) = self.handicap {
            items.push(format!("handicap={}", format_number(handicap)));
        }
        if let Some(ttft_timeout) = self.ttft_timeout {
            items.push(format!("ttft_timeout={}", format_number(ttft_timeout)));
        }
        if items.is_empty() {
            return Ok(());
        }
        write!(f, "[{}]", items.join(","))
    }
}

/// Picks a leaf of a weighted selector by weight (absent = 1.0), skipping `excluded` indices, so a
/// caller can re-roll after a failure. `roll` is a uniform sample from `[0, 1)`; values outside
/// are clamped. Returns `None` when every leaf is excluded or no weight is usable.
pub fn pick_weighted(leaves: &[Leaf], excluded: &[usize], roll: f64) -> Option<usize> {
    pick_by_weight(
        leaves.iter().map(|leaf| leaf.annotations.weight),
        excluded,
        roll,
    )
}

/// [`pick_weighted`] over the weights alone (absent = 1.0), for callers that hold the
/// annotations elsewhere.
pub fn pick_by_weight(
    weights: impl Iterator<Item = Option<f64>>,
    excluded: &[usize],
    roll: f64,
) -> Option<usize> {
    let candidates: Vec<(usize, f64)> = weights
        .enumerate()
        .filter(|(index, _)| !excluded.contains(index))
        .map(|(index, weight)| (index, weight.unwrap_or(1.0)))
        .filter(|(_, weight)| weight.is_finite() && *weight > 0.0)
        .collect();
    // Dividing by the largest weight keeps the sum finite even for weights near f64::MAX.
    let largest = candidates
        .iter()
        .map(|(_, weight)| *weight)
        .fold(0.0, f64::max);
    if largest <= 0.0 {
        return None;
    }
    let total: f64 = candidates.iter().map(|(_, weight)| weight / largest).sum();
    let roll = if roll.is_nan() {
        0.0
    } else {
        roll.clamp(0.0, 1.0)
    };
    let target = roll * total;
    let mut cumulative = 0.0;
    for (index, weight) in &candidates {
        cumulative += weight / largest;
        if target < cumulative {
            return Some(*index);
        }
    }
    // Only reached through rounding when `roll` is (nearly) 1.
    candidates.last().map(|(index, _)| *index)
}

/// The largest `handicap` or `ttft_timeout`, in seconds: an hour is longer than any request
/// may run, and keeps every value a valid `Duration`.
pub const MAX_SECONDS: f64 = 3600.0;

/// How big a selector may be; a client writes selectors, so each is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectorLimits {
    /// Longest selector text, in bytes.
    pub max_len: usize,
    /// Most leaves in any selector.
    pub max_selector_leaves: usize,
    /// Most legs in a parallel race (`!`), each one an upstream call.
    pub max_race_legs: usize,
}

impl Default for SelectorLimits {
    fn default() -> Self {
        Self {
            max_len: 16 * 1024,
            max_selector_leaves: 32,
            max_race_legs: 8,
        }
    }
}

/// Parses and validates a selector within the default [`SelectorLimits`].
///
/// # Errors
///
/// Returns a [`SelectorError`] whose `code` says which rule the input broke.
pub fn parse(input: &str) -> Result<Selector, SelectorError> {
    parse_within(input, &SelectorLimits::default())
}

/// Parses and validates a selector within `limits`; the length is checked before any parsing
/// and the leaf count before any leaf is parsed.
///
/// # Errors
///
/// Returns a [`SelectorError`] whose `code` says which rule the input broke.
pub fn parse_within(input: &str, limits: &SelectorLimits) -> Result<Selector, SelectorError> {
    if input.len() > limits.max_len {
        return Err(SelectorError {
            code: SelectorErrorCode::SelectorTooLong,
            message: format!(
                "the selector is {} bytes long; at most {} are allowed",
                input.len(),
                limits.max_len
            ),
            position: None,
        });
    }
    Parser { input, limits }.parse()
}

const OPERATORS: [char; 3] = ['|', '^', '!'];
const RESERVED_NAMESPACES: [&str; 2] = ["alias", "auto"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnnotationKey {
    Weight,
    MaxContext,
    First,
    Thinker,
    Handicap,
    TtftTimeout,
}

impl AnnotationKey {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "weight" => Self::Weight,
            "max_context" => Self::MaxContext,
            "first" => Self::First,
            "thinker" => Self::Thinker,
            "handicap" => Self::Handicap,
            "ttft_timeout" => Self::TtftTimeout,
            _ => return None,
        })
    }

    const fn name(self) -> &'static str {
        match self {
            Self::Weight => "weight",
            Self::MaxContext => "max_context",
            Self::First => "first",
            Self::Thinker => "thinker",
            Self::Handicap => "handicap",
            Self::TtftTimeout => "ttft_timeout",
        }
    }

    const fn allowed_in(self) -> &'static [SelectorKind] {
        match self {
            Self::Weight | Self::First | Self::Thinker => &[SelectorKind::Weighted],
            Self::MaxContext => &[
                SelectorKind::Single,
                SelectorKind::Failover,
                SelectorKind::Weighted,
            ],
            Self::Handicap | Self::TtftTimeout => &[SelectorKind::Parallel],
        }
    }
}

/// One `key[=value]` item of an annotation block; `at` is a subslice of the input for positions.
struct AnnotationItem<'a> {
    key: &'a str,
    value: Option<&'a str>,
    at: &'a str,
}

struct Parser<'a> {
    input: &'a str,
    limits: &'a SelectorLimits,
}

impl<'a> Parser<'a> {
    fn parse(&self) -> Result<Selector, SelectorError> {
        if self.input.trim().is_empty() {
            return Err(self.error(
                SelectorErrorCode::SyntaxError,
                None,
                "empty selector".to_owned(),
            ));
        }
        self.check_brackets()?;
        let (kind, branches) = self.split_branches()?;
        self.check_counts(kind, branches.len())?;
        if kind == SelectorKind::Single {
            return Ok(Selector::Single(self.parse_branch(self.input, kind)?));
        }
        let mut leaves = Vec::with_capacity(branches.len());
        for branch in branches {
            leaves.push(self.parse_branch(branch, kind)?);
        }
        self.check_unique_flag(&leaves, AnnotationKey::First, |a| a.first)?;
        self.check_unique_flag(&leaves, AnnotationKey::Thinker, |a| a.thinker)?;
        Ok(match kind {
            // `Single` returned above.
            SelectorKind::Single | SelectorKind::Failover => Selector::Failover(leaves),
            SelectorKind::Weighted => Selector::Weighted(leaves),
            SelectorKind::Parallel => Selector::Parallel(leaves),
        })
    }

    fn check_counts(&self, kind: SelectorKind, leaves: usize) -> Result<(), SelectorError> {
        let (code, limit, what) = if kind == SelectorKind::Parallel {
            (
                SelectorErrorCode::TooManyRaceLegs,
                self.limits
                    .max_race_legs
                    .min(self.limits.max_selector_leaves),
                "legs in a parallel race (routing.max_race_legs)",
            )
        } else {
            (
                SelectorErrorCode::TooManyLeaves,
                self.limits.max_selector_leaves,
                "leaves (routing.max_selector_leaves)",
            )
        };
        if leaves > limit {
            return Err(SelectorError {
                code,
                message: format!("{leaves} {what}; at most {limit} are allowed"),
                position: None,
            });
        }
        Ok(())
    }

    /// Brackets only delimit annotation blocks, so they must pair up and never nest.
    fn check_brackets(&self) -> Result<(), SelectorError> {
        let mut open: Option<usize> = None;
        for (index, c) in self.input.char_indices() {
            match c {
                '[' if open.is_some() => {
                    return Err(SelectorError::at(
                        SelectorErrorCode::UnsupportedConstruct,
                        index,
                        "nested brackets are not supported; selectors are flat".to_owned(),
                    ));
                }
                '[' => open = Some(index),
                ']' => {
                    open.take().ok_or_else(|| {
                        SelectorError::at(
                            SelectorErrorCode::SyntaxError,
                            index,
                            "`]` without a matching `[`".to_owned(),
                        )
                    })?;
                }
                _ => {}
            }
        }
        match open {
            Some(index) => Err(SelectorError::at(
                SelectorErrorCode::SyntaxError,
                index,
                "annotation block `[` is never closed".to_owned(),
            )),
            None => Ok(()),
        }
    }

    /// Splits at operators outside brackets; all operators must be the same character.
    fn split_branches(&self) -> Result<(SelectorKind, Vec<&'a str>), SelectorError> {
        let input = self.input;
        let mut operator: Option<char> = None;
        let mut branches = Vec::new();
        let mut start = 0;
        let mut in_block = false;
        for (index, c) in input.char_indices() {
            match c {
                '[' => in_block = true,
                ']' => in_block = false,
                c if OPERATORS.contains(&c) => {
                    if in_block {
                        return Err(SelectorError::at(
                            SelectorErrorCode::UnsupportedConstruct,
                            index,
                            format!(
                                "operator `{c}` inside an annotation block; nested selectors are not supported"
                            ),
                        ));
                    }
                    match operator {
                        Some(previous) if previous != c => {
                            return Err(SelectorError::at(
                                SelectorErrorCode::UnsupportedConstruct,
                                index,
                                format!(
                                    "cannot mix `{previous}` and `{c}` in one selector; selectors are flat"
                                ),
                            ));
                        }
                        _ => operator = Some(c),
                    }
                    branches.push(input.get(start..index).unwrap_or_default());
                    start = index + c.len_utf8();
                }
                _ => {}
            }
        }
        branches.push(input.get(start..).unwrap_or_default());
        let kind = operator
            .and_then(SelectorKind::from_operator)
            .unwrap_or(SelectorKind::Single);
        for branch in &branches {
            if branch.trim().is_empty() {
                let operator = kind.operator().unwrap_or('|');
                return Err(self.error(
                    SelectorErrorCode::SyntaxError,
                    Some(branch),
                    format!(
                        "empty branch: `{operator}` needs a leaf on each side, and {} needs at least two",
                        kind.describe()
                    ),
                ));
            }
        }
        Ok((kind, branches))
    }

    fn parse_branch(&self, branch: &'a str, kind: SelectorKind) -> Result<Leaf, SelectorError> {
        let mut rest = branch.trim();
        let mut items: Vec<AnnotationItem<'a>> = Vec::new();
        while let Some(after_open) = rest.strip_prefix('[') {
            let Some((block, after_close)) = after_open.split_once(']') else {
                return Err(self.error(
                    SelectorErrorCode::SyntaxError,
                    Some(rest),
                    "annotation block `[` is never closed".to_owned(),
                ));
            };
            self.parse_block(block, rest, &mut items)?;
            rest = after_close.trim_start();
        }
        let mut annotations = Annotations::default();
        for item in &items {
            self.apply_annotation(item, kind, &mut annotations)?;
        }
        if annotations.first && annotations.thinker {
            return Err(self.error(
                SelectorErrorCode::UnsupportedConstruct,
                Some(branch),
                "one branch cannot be both `first` and `thinker`".to_owned(),
            ));
        }
        let mut leaf = self.parse_leaf(rest)?;
        leaf.annotations = annotations;
        Ok(leaf)
    }

    /// Adds the items of one block (`block` is the text between the brackets) to `items`.
    fn parse_block(
        &self,
        block: &'a str,
        whole: &'a str,
        items: &mut Vec<AnnotationItem<'a>>,
    ) -> Result<(), SelectorError> {
        if block.trim().is_empty() {
            return Err(self.error(
                SelectorErrorCode::SyntaxError,
                Some(whole),
                "empty annotation block `[]`".to_owned(),
            ));
        }
        for raw in block.split(',') {
            let at = raw.trim();
            let (key, value) = match at.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim())),
                None => (at, None),
            };
            if key.is_empty() {
                return Err(self.error(
                    SelectorErrorCode::SyntaxError,
                    Some(raw),
                    "annotation item without a key (expected `key` or `key=value`)".to_owned(),
                ));
            }
            if items.iter().any(|item| item.key == key) {
                return Err(self.error(
                    SelectorErrorCode::SyntaxError,
                    Some(at),
                    format!("annotation `{key}` is given more than once for this branch"),
                ));
            }
            items.push(AnnotationItem { key, value, at });
        }
        Ok(())
    }

    fn apply_annotation(
        &self,
        item: &AnnotationItem<'a>,
        kind: SelectorKind,
        annotations: &mut Annotations,
    ) -> Result<(), SelectorError> {
        let Some(key) = AnnotationKey::from_name(item.key) else {
            return Err(self.error(
                SelectorErrorCode::UnsupportedConstruct,
                Some(item.at),
                format!(
                    "unknown annotation `{}` in {} (known: weight, max_context, first, thinker, handicap, ttft_timeout)",
                    item.key,
                    kind.describe()
                ),
            ));
        };
        if !key.allowed_in().contains(&kind) {
            let allowed: Vec<&str> = key.allowed_in().iter().map(|k| k.as_str()).collect();
            return Err(self.error(
                SelectorErrorCode::UnsupportedConstruct,
                Some(item.at),
                format!(
                    "annotation `{}` is not allowed in {} (allowed in: {})",
                    key.name(),
                    kind.describe(),
                    allowed.join(", ")
                ),
            ));
        }
        match key {
            AnnotationKey::Weight => {
                annotations.weight =
                    Some(self.number(item, SelectorErrorCode::InvalidWeight, false, f64::MAX)?);
            }
            AnnotationKey::MaxContext => {
                let parsed = item
                    .value
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|v| *v > 0);
                let Some(max_context) = parsed else {
                    return Err(self.error(
                        SelectorErrorCode::InvalidMaxContext,
                        Some(item.at),
                        format!(
                            "`max_context` must be a positive integer, got {}",
                            describe_value(item.value)
                        ),
                    ));
                };
                annotations.max_context = Some(max_context);
            }
            AnnotationKey::First => annotations.first = self.flag(item)?,
            AnnotationKey::Thinker => annotations.thinker = self.flag(item)?,
            AnnotationKey::Handicap => {
                let handicap =
                    self.number(item, SelectorErrorCode::InvalidHandicap, true, MAX_SECONDS)?;
                // `-0` is accepted as zero; store +0 so it prints back as `0`.
                annotations.handicap = Some(if handicap == 0.0 { 0.0 } else { handicap });
            }
            AnnotationKey::TtftTimeout => {
                annotations.ttft_timeout = Some(self.number(
                    item,
                    SelectorErrorCode::InvalidTtftTimeout,
                    false,
                    MAX_SECONDS,
                )?);
            }
        }
        Ok(())
    }

    /// A finite number up to `max`, positive (or non-negative when `zero_allowed`).
    fn number(
        &self,
        item: &AnnotationItem<'a>,
        code: SelectorErrorCode,
        zero_allowed: bool,
        max: f64,
    ) -> Result<f64, SelectorError> {
        let parsed = item
            .value
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v <= max && (*v > 0.0 || (zero_allowed && *v == 0.0)));
        parsed.ok_or_else(|| {
            let sign = if zero_allowed {
                "a non-negative number"
            } else {
                "a positive number"
            };
            let expected = if max < f64::MAX {
                format!("{sign} of at most {}", format_number(max))
            } else {
                sign.to_owned()
            };
            self.error(
                code,
                Some(item.at),
                format!(
                    "`{}` must be {expected}, got {}",
                    item.key,
                    describe_value(item.value)
                ),
            )
        })
    }

    /// `[flag]` or `[flag=1|yes|true]`; a negative value is rejected rather than ignored, so a
    /// branch never silently loses a marker the author thought they had switched off.
    fn flag(&self, item: &AnnotationItem<'a>) -> Result<bool, SelectorError> {
        let Some(value) = item.value else {
            return Ok(true);
        };
        let is = |words: [&str; 3]| words.iter().any(|w| value.eq_ignore_ascii_case(w));
        if is(["1", "yes", "true"]) {
            return Ok(true);
        }
        let hint = if is(["0", "no", "false"]) {
            format!("; to turn `{}` off, remove the annotation", item.key)
        } else {
            String::new()
        };
        Err(self.error(
            SelectorErrorCode::SyntaxError,
            Some(item.at),
            format!(
                "`{}` takes no value or one of 1, yes, true, got `{value}`{hint}",
                item.key
            ),
        ))
    }

    fn check_unique_flag(
        &self,
        leaves: &[Leaf],
        key: AnnotationKey,
        is_set: impl Fn(&Annotations) -> bool,
    ) -> Result<(), SelectorError> {
        let marked = leaves
            .iter()
            .filter(|leaf| is_set(&leaf.annotations))
            .count();
        if marked > 1 {
            return Err(self.error(
                SelectorErrorCode::UnsupportedConstruct,
                None,
                format!(
                    "`{}` is set on {marked} branches; at most one branch may carry it",
                    key.name()
                ),
            ));
        }
        Ok(())
    }

    /// `body` is the trimmed text after the annotation blocks.
    fn parse_leaf(&self, body: &'a str) -> Result<Leaf, SelectorError> {
        if body.is_empty() {
            return Err(self.error(
                SelectorErrorCode::InvalidLeaf,
                Some(body),
                "annotation block without a leaf after it".to_owned(),
            ));
        }
        let (head, query) = match body.split_once('?') {
            Some((head, query)) => (head, Some(query)),
            None => (body, None),
        };
        self.check_leaf_head(head)?;
        if let Some(query) = query
            && let Some(index) = query.find(['[', ']'])
        {
            return Err(self.error(
                SelectorErrorCode::SyntaxError,
                query.get(index..),
                "a raw `[` or `]` in URI params must be percent-encoded (%5B, %5D)".to_owned(),
            ));
        }
        let (backend, model) = self.split_backend(head)?;
        if model.is_empty() {
            return Err(self.error(
                SelectorErrorCode::InvalidLeaf,
                Some(head),
                format!("leaf `{head}` has an empty model"),
            ));
        }
        Ok(Leaf {
            backend,
            model: model.to_owned(),
            params: match query {
                Some(query) => self.parse_params(query)?,
                None => Vec::new(),
            },
            annotations: Annotations::default(),
        })
    }

    /// Rejects characters that can never be part of a backend or model name.
    fn check_leaf_head(&self, head: &'a str) -> Result<(), SelectorError> {
        for (index, c) in head.char_indices() {
            let at = head.get(index..);
            let problem = match c {
                '[' if head
                    .get(..index)
                    .is_some_and(|before| before.ends_with(':')) =>
                {
                    Some((
                        SelectorErrorCode::UnsupportedConstruct,
                        "bracketed sub-selectors such as `hybrid:[...]` are not supported"
                            .to_owned(),
                    ))
                }
                '[' | ']' => Some((
                    SelectorErrorCode::SyntaxError,
                    "annotation blocks must come before the leaf, e.g. `[weight=2]openai:gpt-4o`"
                        .to_owned(),
                )),
                '(' | ')' | '{' | '}' => Some((
                    SelectorErrorCode::UnsupportedConstruct,
                    format!("grouping with `{c}` is not supported; selectors are flat"),
                )),
                c if c.is_whitespace() || c.is_control() => Some((
                    SelectorErrorCode::InvalidLeaf,
                    format!(
                        "leaf `{}` contains whitespace or a control character",
                        head.trim()
                    ),
                )),
                _ => None,
            };
            if let Some((code, message)) = problem {
                return Err(self.error(code, at, message));
            }
        }
        Ok(())
    }

    /// Splits `backend:model`; model-only unless the first `:` precedes the first `/`.
    fn split_backend(&self, head: &'a str) -> Result<(Option<BackendRef>, &'a str), SelectorError> {
        let explicit = match (head.find(':'), head.find('/')) {
            (Some(colon), Some(slash)) => colon < slash,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let Some((backend, model)) = head.split_once(':').filter(|_| explicit) else {
            return Ok((None, head));
        };
        if let Some((namespace, _)) = backend
            .split_once('.')
            .filter(|(namespace, _)| RESERVED_NAMESPACES.contains(namespace))
        {
            return Err(self.error(
                SelectorErrorCode::InvalidLeaf,
                Some(head),
                format!("`{namespace}` is a reserved namespace, not a backend with instances"),
            ));
        }
        if RESERVED_NAMESPACES.contains(&backend) {
            if model.is_empty() {
                return Err(self.error(
                    SelectorErrorCode::InvalidLeaf,
                    Some(head),
                    format!("`{backend}:` needs a name after it"),
                ));
            }
            return Ok((None, head));
        }
        Ok((Some(self.parse_backend_ref(backend)?), model))
    }

    fn parse_backend_ref(&self, backend: &'a str) -> Result<BackendRef, SelectorError> {
        if backend.is_empty() {
            return Err(self.error(
                SelectorErrorCode::InvalidLeaf,
                Some(backend),
                "empty backend before `:`".to_owned(),
            ));
        }
        let (backend_type, instance) = match backend.split_once('.') {
            Some((backend_type, instance)) => (backend_type, Some(instance)),
            None => (backend, None),
        };
        let is_name = |s: &str, extra: &[char]| {
            !s.is_empty()
                && s.chars().all(|c| {
                    c.is_ascii_alphanumeric() || c == '-' || c == '_' || extra.contains(&c)
                })
        };
        if !is_name(backend_type, &[]) || instance.is_some_and(|i| !is_name(i, &['.'])) {
            return Err(self.error(
                SelectorErrorCode::InvalidLeaf,
                Some(backend),
                format!(
                    "invalid backend `{backend}`: expected `type` or `type.instance` made of ASCII letters, digits, `-` and `_`"
                ),
            ));
        }
        Ok(BackendRef {
            backend_type: backend_type.to_owned(),
            instance: instance.map(str::to_owned),
        })
    }

    /// `k=v&k2=v2`; empty pieces are skipped, a piece without `=` has an empty value.
    fn parse_params(&self, query: &'a str) -> Result<Vec<(String, String)>, SelectorError> {
        let mut params = Vec::new();
        for piece in query.split('&').filter(|piece| !piece.is_empty()) {
            let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
            let key = percent_decode(key);
            if key.is_empty() {
                return Err(self.error(
                    SelectorErrorCode::InvalidLeaf,
                    Some(piece),
                    format!("URI param `{piece}` has an empty name"),
                ));
            }
            params.push((key, percent_decode(value)));
        }
        Ok(params)
    }

    /// `at` must be a subslice of the input; its start becomes the error position.
    fn error(&self, code: SelectorErrorCode, at: Option<&str>, message: String) -> SelectorError {
        let position = at.map(|part| {
            (part.as_ptr() as usize)
                .saturating_sub(self.input.as_ptr() as usize)
                .min(self.input.len())
        });
        SelectorError {
            code,
            message,
            position,
        }
    }
}

/// Shortest text that parses back to the same `f64`; exponent form only for extreme magnitudes,
/// where plain decimals would run to hundreds of digits.
fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

fn describe_value(value: Option<&str>) -> String {
    match value {
        Some(value) => format!("`{value}`"),
        None => "no value".to_owned(),
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays literal, and byte sequences
/// that are not UTF-8 become U+FFFD (the leniency of Python's `urllib.parse.unquote`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = match (byte, bytes.get(index + 1), bytes.get(index + 2)) {
            (b'%', Some(&high), Some(&low)) => hex_value(high).zip(hex_value(low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                decoded.push(high << 4 | low);
                index += 3;
            }
            None => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// Encodes what the parser would otherwise read as structure, plus whitespace (leaves are
/// trimmed) and control characters, so any decoded value prints back to itself.
fn write_percent_encoded(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        let needs_escape = matches!(
            c,
            '%' | '&' | '=' | '?' | '#' | '+' | ',' | '|' | '^' | '!' | '[' | ']'
        ) || c.is_whitespace()
            || c.is_control();
        if needs_escape {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                write!(f, "%{byte:02X}")?;
            }
        } else {
            f.write_char(c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code_of(input: &str) -> SelectorErrorCode {
        match parse(input) {
            Ok(selector) => panic!("`{input}` should be rejected, parsed as {selector:?}"),
            Err(error) => error.code,
        }
    }

    fn ok(input: &str) -> Selector {
        match parse(input) {
            Ok(selector) => selector,
            Err(error) => panic!("`{input}` should parse: {error}"),
        }
    }

    fn single(input: &str) -> Leaf {
        match ok(input) {
            Selector::Single(leaf) => leaf,
            other => panic!("`{input}` should be a single leaf, got {other:?}"),
        }
    }

    fn backend(backend_type: &str, instance: Option<&str>) -> Option<BackendRef> {
        Some(BackendRef {
            backend_type: backend_type.to_owned(),
            instance: instance.map(str::to_owned),
        })
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn assert_round_trip(input: &str) {
        let parsed = ok(input);
        let printed = parsed.to_string();
        assert_eq!(
            parse(&printed),
            Ok(parsed),
            "`{input}` printed as `{printed}`"
        );
    }

    use SelectorErrorCode::*;

    // ---- leaves

    #[test]
    fn backend_and_model() {
        let leaf = single("openai:gpt-4o");
        assert_eq!(leaf.backend, backend("openai", None));
        assert_eq!(leaf.model, "gpt-4o");
        assert!(leaf.params.is_empty());
        assert_eq!(leaf.annotations, Annotations::default());
    }

    #[test]
    fn first_colon_before_first_slash_names_the_backend() {
        let leaf = single("openrouter:anthropic/claude-3-haiku:beta");
        assert_eq!(leaf.backend, backend("openrouter", None));
        assert_eq!(leaf.model, "anthropic/claude-3-haiku:beta");
    }

    #[test]
    fn vendor_paths_are_model_only() {
        for input in [
            "vendor/model",
            "vendor/model:variant",
            "gpt-4o",
            "a/b:c/d:e",
        ] {
            let leaf = single(input);
            assert_eq!(leaf.backend, None, "{input}");
            assert_eq!(leaf.model, input);
        }
    }

    #[test]
    fn colon_after_query_mark_does_not_name_a_backend() {
        let leaf = single("vendor/model?note=a:b");
        assert_eq!(leaf.backend, None);
        assert_eq!(leaf.model, "vendor/model");
        assert_eq!(leaf.params, params(&[("note", "a:b")]));
    }

    #[test]
    fn instance_suffix_is_split() {
        let leaf = single("openai.1:gpt-4o");
        assert_eq!(leaf.backend, backend("openai", Some("1")));
        let leaf = single("cursor-cli-acp.default:auto");
        assert_eq!(leaf.backend, backend("cursor-cli-acp", Some("default")));
        assert_eq!(
            leaf.backend.map(|b| b.id()),
            Some("cursor-cli-acp.default".to_owned())
        );
    }

    #[test]
    fn reserved_namespaces_are_model_only() {
        for input in ["alias:fast", "auto:cheap", "alias:a/b:c"] {
            let leaf = single(input);
            assert_eq!(leaf.backend, None, "{input}");
            assert_eq!(leaf.model, input);
        }
        assert_eq!(code_of("alias:"), InvalidLeaf);
        assert_eq!(code_of("auto:?x=1"), InvalidLeaf);
        assert_eq!(code_of("alias.1:fast"), InvalidLeaf);
    }

    #[test]
    fn empty_backend_or_model_is_invalid_leaf() {
        for input in [
            ":gpt-4o",
            "openai:",
            "openai:?x=1",
            "?x=1",
            ".1:m",
            "openai.:m",
        ] {
            assert_eq!(code_of(input), InvalidLeaf, "{input}");
        }
    }

    #[test]
    fn malformed_backend_names_are_invalid_leaf() {
        for input in ["open ai:m", "op@nai:m", "openai :m", "é:m", "openai: m"] {
            assert_eq!(code_of(input), InvalidLeaf, "{input}");
        }
    }

    #[test]
    fn whitespace_around_leaves_is_trimmed() {
        let selector = ok("  openai:gpt-4o  |\tanthropic:claude \n");
        let models: Vec<&str> = selector.leaves().iter().map(|l| l.model.as_str()).collect();
        assert_eq!(models, ["gpt-4o", "claude"]);
        assert_eq!(ok(" [weight=2] a:m ^ b:m ").leaves().len(), 2);
    }

    #[test]
    fn uri_params_are_parsed_and_decoded() {
        let leaf = single("openai:gpt-4o?temperature=0.5&reasoning_effort=high&verbosity=low");
        assert_eq!(
            leaf.params,
            params(&[
                ("temperature", "0.5"),
                ("reasoning_effort", "high"),
                ("verbosity", "low")
            ])
        );
        let leaf = single("a:m?s=%21%7C%5E%26%3D%25%2C%5B%5D&k%3Dx=caf%C3%A9");
        assert_eq!(leaf.params, params(&[("s", "!|^&=%,[]"), ("k=x", "café")]));
    }

    #[test]
    fn percent_decoding_is_lenient() {
        let leaf = single("a:m?a=100%&b=%zz&c=%4&d=%ff&e=%4a");
        assert_eq!(
            leaf.params,
            params(&[
                ("a", "100%"),
                ("b", "%zz"),
                ("c", "%4"),
                ("d", "\u{FFFD}"),
                ("e", "J")
            ])
        );
    }

    #[test]
    fn params_keep_order_duplicates_and_blank_values() {
        let leaf = single("a:m?x=1&&x=2&flag&y=a=b&");
        assert_eq!(
            leaf.params,
            params(&[("x", "1"), ("x", "2"), ("flag", ""), ("y", "a=b")])
        );
        assert!(single("a:m?").params.is_empty());
        assert_eq!(code_of("a:m?=1"), InvalidLeaf);
    }

    #[test]
    fn raw_bang_in_params_is_the_race_operator() {
        let selector = ok("a:m?stop=wow!b:m");
        assert_eq!(selector.kind(), SelectorKind::Parallel);
        assert_eq!(selector.leaves()[0].params, params(&[("stop", "wow")]));
        assert_eq!(
            single("a:m?stop=wow%21").params,
            params(&[("stop", "wow!")])
        );
    }

    #[test]
    fn raw_brackets_in_params_are_syntax_errors() {
        assert_eq!(code_of("a:m?x=[1]"), SyntaxError);
    }

    // ---- composites

    #[test]
    fn failover_keeps_order() {
        let selector = ok("a:m1|b:m2|c:m3");
        assert_eq!(selector.kind(), SelectorKind::Failover);
        let backends: Vec<String> = selector
            .leaves()
            .iter()
            .filter_map(|l| l.backend.as_ref().map(BackendRef::id))
            .collect();
        assert_eq!(backends, ["a", "b", "c"]);
    }

    #[test]
    fn weighted_with_weights() {
        let selector = ok("[weight=3]a:m^[weight=1]b:m");
        assert_eq!(selector.kind(), SelectorKind::Weighted);
        let weights: Vec<Option<f64>> = selector
            .leaves()
            .iter()
            .map(|l| l.annotations.weight)
            .collect();
        assert_eq!(weights, [Some(3.0), Some(1.0)]);
        assert_eq!(ok("a:m^b:m").leaves()[0].annotations.weight, None);
    }

    #[test]
    fn parallel_with_handicap_and_ttft_timeout() {
        let selector = ok("[handicap=2,ttft_timeout=10]a:m![handicap=0]b:m");
        assert_eq!(selector.kind(), SelectorKind::Parallel);
        let first = &selector.leaves()[0].annotations;
        assert_eq!(
            (first.handicap, first.ttft_timeout),
            (Some(2.0), Some(10.0))
        );
        assert_eq!(selector.leaves()[1].annotations.handicap, Some(0.0));
    }

    #[test]
    fn composites_need_two_legs() {
        for input in [
            "a:m!",
            "!a:m",
            "a:m|",
            "|a:m",
            "a:m^",
            "a:m||b:m",
            "a:m! !b:m",
            "[weight=2]a:m^ ",
        ] {
            assert_eq!(code_of(input), SyntaxError, "{input}");
        }
    }

    #[test]
    fn mixing_operators_is_unsupported() {
        for input in ["a:m|b:m^c:m", "a:m^b:m!c:m", "a:m!b:m|c:m"] {
            assert_eq!(code_of(input), UnsupportedConstruct, "{input}");
        }
    }

    #[test]
    fn nesting_is_rejected() {
        assert_eq!(code_of("(a:m|b:m)^c:m"), UnsupportedConstruct);
        assert_eq!(code_of("[[weight=2]]a:m"), UnsupportedConstruct);
        assert_eq!(code_of("[a:m|b:m]^c:m"), UnsupportedConstruct);
        assert_eq!(code_of("hybrid:[a:m1?p=1,b:m2]"), UnsupportedConstruct);
        assert_eq!(code_of("{a:m}"), UnsupportedConstruct);
    }

    #[test]
    fn empty_selector_is_syntax_error() {
        for input in ["", "   ", "\n\t"] {
            assert_eq!(code_of(input), SyntaxError, "{input:?}");
        }
    }

    // ---- annotation blocks

    #[test]
    fn blocks_merge() {
        let selector = ok("[first][weight=3]a:m^b:m");
        let annotations = &selector.leaves()[0].annotations;
        assert!(annotations.first);
        assert_eq!(annotations.weight, Some(3.0));
        let selector = ok("[ weight = 2 , max_context = 100 ] [thinker] a:m ^ b:m");
        let annotations = &selector.leaves()[0].annotations;
        assert_eq!(
            (annotations.weight, annotations.max_context),
            (Some(2.0), Some(100))
        );
        assert!(annotations.thinker);
    }

    #[test]
    fn duplicate_keys_are_syntax_errors() {
        assert_eq!(code_of("[weight=1][weight=2]a:m^b:m"), SyntaxError);
        assert_eq!(code_of("[weight=1,weight=1]a:m^b:m"), SyntaxError);
        assert_eq!(code_of("[first][first=yes]a:m^b:m"), SyntaxError);
    }

    #[test]
    fn malformed_blocks_are_syntax_errors() {
        for input in [
            "[weight=2a:m^b:m",
            "weight=2]a:m^b:m",
            "[]a:m",
            "[ ]a:m",
            "[weight=2,]a:m^b:m",
            "[,weight=2]a:m^b:m",
            "[=2]a:m^b:m",
            "a:m[weight=2]^b:m",
            "[weight=2]a:m]^b:m",
        ] {
            assert_eq!(code_of(input), SyntaxError, "{input}");
        }
    }

    #[test]
    fn block_without_leaf_is_invalid_leaf() {
        assert_eq!(code_of("[max_context=10]"), InvalidLeaf);
        assert_eq!(code_of("[weight=2]^b:m"), InvalidLeaf);
    }

    #[test]
    fn unknown_keys_are_unsupported_and_named() {
        let error = parse("[colour=red]a:m^b:m").err();
        assert_eq!(error.as_ref().map(|e| e.code), Some(UnsupportedConstruct));
        assert!(error.is_some_and(|e| e.message.contains("colour")));
    }

    #[test]
    fn keys_with_the_wrong_operator_are_unsupported_and_named() {
        let cases = [
            ("[weight=2]a:m|b:m", "weight", "failover"),
            ("[weight=2]a:m", "weight", "single"),
            ("[weight=2]a:m!b:m", "weight", "parallel"),
            ("[first]a:m|b:m", "first", "failover"),
            ("[first]a:m", "first", "single"),
            ("[thinker]a:m!b:m", "thinker", "parallel"),
            ("[max_context=10]a:m!b:m", "max_context", "parallel"),
            ("[handicap=1]a:m^b:m", "handicap", "weighted"),
            ("[handicap=1]a:m", "handicap", "single"),
            ("[ttft_timeout=1]a:m|b:m", "ttft_timeout", "failover"),
        ];
        for (input, key, operator) in cases {
            let error = parse(input).err();
            assert_eq!(
                error.as_ref().map(|e| e.code),
                Some(UnsupportedConstruct),
                "{input}"
            );
            let message = error.map(|e| e.message).unwrap_or_default();
            assert!(
                message.contains(key) && message.contains(operator),
                "{input}: {message}"
            );
        }
    }

    #[test]
    fn wrong_operator_is_reported_before_a_bad_value() {
        assert_eq!(code_of("[weight=-1]a:m|b:m"), UnsupportedConstruct);
    }

    #[test]
    fn weight_must_be_positive_and_finite() {
        for value in ["0", "-1", "-0", "inf", "NaN", "abc", "", "1e400", "3 kg"] {
            let input = format!("[weight={value}]a:m^b:m");
            assert_eq!(code_of(&input), InvalidWeight, "{input}");
        }
        assert_eq!(code_of("[weight]a:m^b:m"), InvalidWeight);
        for (value, expected) in [("0.5", 0.5), ("2", 2.0), ("1e3", 1000.0), ("+4", 4.0)] {
            let input = format!("[weight={value}]a:m^b:m");
            assert_eq!(
                ok(&input).leaves()[0].annotations.weight,
                Some(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn max_context_must_be_a_positive_integer() {
        for value in ["0", "-5", "1.5", "1e3", "x", "", "99999999999999999999999"] {
            let input = format!("[max_context={value}]a:m");
            assert_eq!(code_of(&input), InvalidMaxContext, "{input}");
        }
        assert_eq!(code_of("[max_context]a:m"), InvalidMaxContext);
        assert_eq!(
            single("[max_context=128000]a:m").annotations.max_context,
            Some(128_000)
        );
        assert_eq!(
            ok("[max_context=8]a:m|b:m").leaves()[0]
                .annotations
                .max_context,
            Some(8)
        );
        assert_eq!(
            ok("a:m^[max_context=8]b:m").leaves()[1]
                .annotations
                .max_context,
            Some(8)
        );
    }

    #[test]
    fn first_flag_forms() {
        for form in [
            "[first]",
            "[first=1]",
            "[first=yes]",
            "[first=true]",
            "[first=TRUE]",
        ] {
            let input = format!("{form}a:m^b:m");
            assert!(ok(&input).leaves()[0].annotations.first, "{input}");
        }
        for form in [
            "[first=0]",
            "[first=no]",
            "[first=false]",
            "[first=maybe]",
            "[first=]",
        ] {
            assert_eq!(code_of(&format!("{form}a:m^b:m")), SyntaxError, "{form}");
        }
    }

    #[test]
    fn first_and_thinker_at_most_once() {
        assert_eq!(code_of("[first]a:m^[first]b:m"), UnsupportedConstruct);
        assert_eq!(code_of("[thinker]a:m^[thinker]b:m"), UnsupportedConstruct);
        assert_eq!(code_of("[first,thinker]a:m^b:m"), UnsupportedConstruct);
        assert_eq!(code_of("[first][thinker=yes]a:m^b:m"), UnsupportedConstruct);
        let selector = ok("[first]a:m^[thinker]b:m");
        assert!(selector.leaves()[0].annotations.first);
        assert!(selector.leaves()[1].annotations.thinker);
    }

    #[test]
    fn handicap_must_be_non_negative() {
        for value in ["-1", "inf", "x", ""] {
            let input = format!("[handicap={value}]a:m!b:m");
            assert_eq!(code_of(&input), InvalidHandicap, "{input}");
        }
        assert_eq!(code_of("[handicap]a:m!b:m"), InvalidHandicap);
        assert_eq!(
            ok("[handicap=-0]a:m!b:m").to_string(),
            "[handicap=0]a:m!b:m"
        );
    }

    #[test]
    fn seconds_are_bounded_so_they_always_make_a_duration() {
        // `1e20` seconds once panicked in `Duration::from_secs_f64` when a race started.
        for value in ["1e20", "3600.001", "1e308"] {
            assert_eq!(
                code_of(&format!("[handicap={value}]a:m!b:m")),
                InvalidHandicap
            );
            assert_eq!(
                code_of(&format!("[ttft_timeout={value}]a:m!b:m")),
                InvalidTtftTimeout
            );
        }
        let at_max = ok("[handicap=3600,ttft_timeout=3600]a:m!b:m");
        assert_eq!(at_max.leaves()[0].annotations.handicap, Some(MAX_SECONDS));
    }

    #[test]
    fn size_is_limited() {
        let limits = SelectorLimits {
            max_len: 64,
            max_selector_leaves: 4,
            max_race_legs: 2,
        };
        let code = |input: &str| parse_within(input, &limits).err().map(|e| e.code);
        assert_eq!(code(&"m".repeat(65)), Some(SelectorTooLong));
        assert_eq!(code(&"m".repeat(64)), None);
        assert_eq!(code("a:m!b:m"), None);
        assert_eq!(code("a:m!b:m!c:m"), Some(TooManyRaceLegs));
        assert_eq!(code("a:m|b:m|c:m|d:m"), None);
        assert_eq!(code("a:m|b:m|c:m|d:m|e:m"), Some(TooManyLeaves));
        assert_eq!(code("a^b^c^d^e"), Some(TooManyLeaves));
        // The defaults: 8 race legs, 32 leaves, 16 KiB.
        let race = ["a:m"; 9].join("!");
        assert_eq!(code_of(&race), TooManyRaceLegs);
        assert!(parse(&["a:m"; 8].join("!")).is_ok());
        assert_eq!(code_of(&["a:m"; 33].join("|")), TooManyLeaves);
        assert_eq!(code_of(&"m".repeat(100_000)), SelectorTooLong);
        assert!(
            parse(&vec!["a:m"; 2000].join("!"))
                .unwrap_err()
                .message
                .len()
                < 200
        );
    }

    #[test]
    fn ttft_timeout_must_be_positive() {
        for value in ["0", "-2", "NaN", "soon"] {
            let input = format!("[ttft_timeout={value}]a:m!b:m");
            assert_eq!(code_of(&input), InvalidTtftTimeout, "{input}");
        }
        assert_eq!(
            ok("[ttft_timeout=0.25]a:m!b:m").leaves()[0]
                .annotations
                .ttft_timeout,
            Some(0.25)
        );
    }

    // ---- errors and printing

    #[test]
    fn errors_carry_code_label_and_position() {
        let error = parse("a:m|b:m^c:m").err();
        assert_eq!(error.as_ref().and_then(|e| e.position), Some(7));
        let error = parse("a:m^[weight=zero]b:m").err();
        assert_eq!(error.as_ref().and_then(|e| e.position), Some(5));
        assert_eq!(
            error.as_ref().map(|e| e.code.as_str()),
            Some("invalid_weight")
        );
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("invalid_weight: ") && text.ends_with("(at byte 5)"),
            "{text}"
        );
        assert_eq!(parse("é|:m").err().and_then(|e| e.position), Some(3));
    }

    #[test]
    fn error_code_labels() {
        let labels: Vec<&str> = [
            SyntaxError,
            UnsupportedConstruct,
            InvalidWeight,
            InvalidMaxContext,
            InvalidHandicap,
            InvalidTtftTimeout,
            InvalidLeaf,
        ]
        .iter()
        .map(|c| c.as_str())
        .collect();
        assert_eq!(
            labels,
            [
                "syntax_error",
                "unsupported_construct",
                "invalid_weight",
                "invalid_max_context",
                "invalid_handicap",
                "invalid_ttft_timeout",
                "invalid_leaf"
            ]
        );
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            ("openai:gpt-4o", "openai:gpt-4o"),
            (" a:m | b:m ", "a:m|b:m"),
            ("[weight=3.0][first] a:m ^ b:m", "[first,weight=3]a:m^b:m"),
            (
                "[max_context=100]openai.1:gpt-4o?temperature=0.5",
                "[max_context=100]openai.1:gpt-4o?temperature=0.5",
            ),
            ("a:m?x=%21&y&z=a b&&", "a:m?x=%21&y=&z=a%20b"),
            (
                "[weight=5e-324]a:m^[weight=1e300]b:m",
                "[weight=5e-324]a:m^[weight=1e300]b:m",
            ),
            (
                "[weight=0.0001]a:m^[weight=1e16]b:m",
                "[weight=0.0001]a:m^[weight=1e16]b:m",
            ),
            (
                "[weight=0.00001]a:m^[weight=9999999999999999]b:m",
                "[weight=1e-5]a:m^[weight=1e16]b:m",
            ),
            (
                "[ttft_timeout=10,handicap=1.5]a:m!b:m",
                "[handicap=1.5,ttft_timeout=10]a:m!b:m",
            ),
        ];
        for (input, canonical) in cases {
            assert_eq!(ok(input).to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn spec_examples_round_trip() {
        for input in [
            "openrouter:anthropic/claude-3-haiku:beta",
            "vendor/model:variant",
            "openai.1:gpt-4o",
            "alias:fast",
            "openai:gpt-4o?temperature=0.5&reasoning_effort=high&verbosity=low&top_p=0.9&top_k=40",
            "a:m1|b:m2|c:m3",
            "[weight=3]a:m^[weight=1]b:m",
            "[first][weight=3]a:m^b:m",
            "[max_context=32000]a:m|b:m",
            "[thinker]a:m^b:m",
            "[handicap=2]a:m![ttft_timeout=5]b:m",
            "openrouter:openrouter/free",
            "a:m?v=%25%21%7C%5E%26%3D%2C%20x",
        ] {
            assert_round_trip(input);
        }
    }

    // ---- weighted choice

    fn weighted(weights: &[Option<f64>]) -> Vec<Leaf> {
        weights
            .iter()
            .map(|weight| Leaf {
                backend: None,
                model: "m".to_owned(),
                params: Vec::new(),
                annotations: Annotations {
                    weight: *weight,
                    ..Annotations::default()
                },
            })
            .collect()
    }

    #[test]
    fn pick_weighted_follows_cumulative_weights() {
        let leaves = weighted(&[Some(3.0), None]);
        assert_eq!(pick_weighted(&leaves, &[], 0.0), Some(0));
        assert_eq!(pick_weighted(&leaves, &[], 0.74), Some(0));
        assert_eq!(pick_weighted(&leaves, &[], 0.76), Some(1));
        assert_eq!(pick_weighted(&leaves, &[], 0.999_999), Some(1));
        assert_eq!(pick_weighted(&leaves, &[], 1.0), Some(1));
        assert_eq!(pick_weighted(&leaves, &[], f64::NAN), Some(0));
    }

    #[test]
    fn pick_weighted_rerolls_among_the_rest() {
        let leaves = weighted(&[Some(1.0), Some(1.0), Some(2.0)]);
        assert_eq!(pick_weighted(&leaves, &[2], 0.9), Some(1));
        assert_eq!(pick_weighted(&leaves, &[0, 1], 0.0), Some(2));
        assert_eq!(pick_weighted(&leaves, &[0, 1, 2], 0.5), None);
        assert_eq!(pick_weighted(&[], &[], 0.5), None);
    }

    #[test]
    fn pick_weighted_survives_huge_weights() {
        let leaves = weighted(&[Some(f64::MAX), Some(f64::MAX)]);
        assert_eq!(pick_weighted(&leaves, &[], 0.25), Some(0));
        assert_eq!(pick_weighted(&leaves, &[], 0.75), Some(1));
    }

    // ---- properties

    /// Fragments that often combine into valid (and nearly valid) selectors.
    fn selector_soup() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("a"),
            Just("openai"),
            Just("openai.1"),
            Just("gpt-4o"),
            Just("alias"),
            Just("auto"),
            Just("vendor/"),
            Just(":"),
            Just("/"),
            Just("|"),
            Just("^"),
            Just("!"),
            Just("["),
            Just("]"),
            Just("[weight=2]"),
            Just("weight=0.5"),
            Just("[first]"),
            Just("thinker"),
            Just("[max_context=100]"),
            Just("handicap=0"),
            Just("[ttft_timeout=1.5]"),
            Just(","),
            Just("?"),
            Just("&"),
            Just("="),
            Just("%"),
            Just("%21"),
            Just("%2"),
            Just("%C3%A9"),
            Just("%ff"),
            Just(" "),
            Just("é"),
            Just("模型"),
            Just("\u{1F600}"),
            Just("x"),
            Just("-"),
            Just("."),
            Just("("),
            Just("\t"),
        ];
        prop::collection::vec(fragment, 0..14).prop_map(|parts| parts.concat())
    }

    fn special_chars() -> impl Strategy<Value = String> {
        "[a-z:/|^!\\[\\]=,?&%. é\u{1F600}0-9]{0,40}"
    }

    fn backend_ref() -> impl Strategy<Value = BackendRef> {
        (
            "[a-z][a-z0-9_-]{0,10}".prop_filter("reserved namespace", |t| {
                !RESERVED_NAMESPACES.contains(&t.as_str())
            }),
            prop::option::of("[a-z0-9][a-z0-9_.-]{0,5}"),
        )
            .prop_map(|(backend_type, instance)| BackendRef {
                backend_type,
                instance,
            })
    }

    fn leaf() -> impl Strategy<Value = Leaf> {
        let explicit = (backend_ref(), "[a-zA-Z0-9._:/@+%=&,~é模-]{1,20}")
            .prop_map(|(backend, model)| (Some(backend), model));
        let model_only = prop_oneof![
            "(alias|auto):[a-z0-9._:/-]{1,10}",
            "[a-zA-Z0-9._@é-][a-zA-Z0-9._/@é-]{0,15}",
            "[a-z0-9]{1,5}/[a-z0-9:/.-]{0,10}",
        ]
        .prop_map(|model| (None, model));
        let params = prop::collection::vec(("(?s).{1,8}", "(?s).{0,8}"), 0..3);
        (prop_oneof![explicit, model_only], params).prop_map(|((backend, model), params)| Leaf {
            backend,
            model,
            params,
            annotations: Annotations::default(),
        })
    }

    fn positive() -> impl Strategy<Value = f64> {
        prop_oneof![
            0.001f64..1e6,
            Just(1.0),
            Just(f64::MIN_POSITIVE),
            Just(1e300),
            Just(5e-324)
        ]
    }

    fn seconds() -> impl Strategy<Value = f64> {
        prop_oneof![
            0.001f64..MAX_SECONDS,
            Just(1.0),
            Just(MAX_SECONDS),
            Just(f64::MIN_POSITIVE),
            Just(5e-324)
        ]
    }

    fn annotated(kind: SelectorKind) -> impl Strategy<Value = Leaf> {
        (
            leaf(),
            prop::option::of(positive()),
            prop::option::of(1u64..=u64::MAX),
            prop::option::of(prop_oneof![Just(0.0), seconds()]),
            prop::option::of(seconds()),
        )
            .prop_map(move |(mut leaf, weight, max_context, handicap, ttft)| {
                let allowed = |key: AnnotationKey| key.allowed_in().contains(&kind);
                let a = &mut leaf.annotations;
                a.weight = weight.filter(|_| allowed(AnnotationKey::Weight));
                a.max_context = max_context.filter(|_| allowed(AnnotationKey::MaxContext));
                a.handicap = handicap.filter(|_| allowed(AnnotationKey::Handicap));
                a.ttft_timeout = ttft.filter(|_| allowed(AnnotationKey::TtftTimeout));
                leaf
            })
    }

    fn valid_selector() -> impl Strategy<Value = Selector> {
        let composite = |kind: SelectorKind| prop::collection::vec(annotated(kind), 2..5);
        prop_oneof![
            annotated(SelectorKind::Single).prop_map(Selector::Single),
            composite(SelectorKind::Failover).prop_map(Selector::Failover),
            composite(SelectorKind::Parallel).prop_map(Selector::Parallel),
            (
                composite(SelectorKind::Weighted),
                any::<Option<prop::sample::Index>>(),
                any::<Option<prop::sample::Index>>()
            )
                .prop_map(|(mut leaves, first, thinker)| {
                    let first = first.map(|i| i.index(leaves.len()));
                    let thinker = thinker
                        .map(|i| i.index(leaves.len()))
                        .filter(|t| Some(*t) != first);
                    for (index, leaf) in leaves.iter_mut().enumerate() {
                        leaf.annotations.first = first == Some(index);
                        leaf.annotations.thinker = thinker == Some(index);
                    }
                    Selector::Weighted(leaves)
                }),
        ]
    }

    fn check_no_panic(input: &str) -> Result<(), TestCaseError> {
        if let Err(error) = parse(input) {
            if let Some(position) = error.position {
                prop_assert!(input.is_char_boundary(position), "{error} in {input:?}");
            }
            prop_assert!(!error.message.is_empty());
        }
        Ok(())
    }

    fn check_round_trip(input: &str) -> Result<(), TestCaseError> {
        if let Ok(parsed) = parse(input) {
            let printed = parsed.to_string();
            prop_assert_eq!(
                parse(&printed),
                Ok(parsed),
                "{:?} printed as {:?}",
                input,
                printed
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_never_panics_on_any_string(input in any::<String>()) {
            check_no_panic(&input)?;
        }

        #[test]
        fn parse_never_panics_on_special_chars(input in special_chars()) {
            check_no_panic(&input)?;
            check_round_trip(&input)?;
        }

        #[test]
        fn accepted_soup_round_trips(input in selector_soup()) {
            check_no_panic(&input)?;
            check_round_trip(&input)?;
        }

        #[test]
        fn generated_selectors_round_trip(selector in valid_selector()) {
            let printed = selector.to_string();
            prop_assert_eq!(parse(&printed), Ok(selector), "printed as {:?}", printed);
        }

        #[test]
        fn pick_weighted_never_returns_an_excluded_leaf(
            weights in prop::collection::vec(prop::option::of(positive()), 0..6),
            excluded in prop::collection::vec(0usize..6, 0..6),
            roll in 0.0f64..1.0,
        ) {
            let leaves = weighted(&weights);
            let picked = pick_weighted(&leaves, &excluded, roll);
            let any_left = (0..leaves.len()).any(|i| !excluded.contains(&i));
            prop_assert_eq!(picked.is_some(), any_left);
            if let Some(index) = picked {
                prop_assert!(index < leaves.len() && !excluded.contains(&index));
            }
        }
    }
}
