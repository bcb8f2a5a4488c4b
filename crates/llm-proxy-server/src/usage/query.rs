//! Which usage records a query selects ([`UsageFilter`]), read from the query string of the
//! usage endpoints or the `usage` subcommand's flags, and the dates they take: `YYYY-MM-DD`
//! (UTC; as an end date, the whole day), RFC 3339 (`2025-01-31T12:00:00Z`, offsets allowed) or
//! Unix seconds.

/// Records selected by backend instance, model, session and time (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Backend instance, exactly.
    pub backend: Option<String>,
    /// Model, exactly.
    pub model: Option<String>,
    /// Session id, exactly.
    pub session_id: Option<String>,
    /// Records that started at or after this Unix millisecond.
    pub since_ms: Option<i64>,
    /// Records that started before this Unix millisecond.
    pub until_ms: Option<i64>,
}

/// A filter value that cannot be read: the parameter and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFilter {
    /// The parameter (`start_date`, ...).
    pub param: &'static str,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for BadFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.param, self.message)
    }
}

impl UsageFilter {
    /// A filter from named values (`backend`, `model`, `session_id`, `start_date`,
    /// `end_date`); `allowed_extra` names further parameters the caller reads itself. An
    /// unknown parameter or an unreadable value is an error naming it.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        allowed_extra: &[&str],
    ) -> Result<Self, BadFilter> {
        let mut filter = Self::default();
        for (name, value) in params {
            let text = || {
                let v = value.trim();
                (!v.is_empty()).then(|| v.to_owned())
            };
            match name {
                "backend" => filter.backend = text(),
                "model" => filter.model = text(),
                "session_id" => filter.session_id = text(),
                "start_date" => filter.since_ms = Some(parse_date(value, false, "start_date")?),
                "end_date" => filter.until_ms = Some(parse_date(value, true, "end_date")?),
                other if allowed_extra.contains(&other) => {}
                other => {
                    return Err(BadFilter {
                        param: "query",
                        message: format!(
                            "unknown parameter '{}'; expected backend, model, session_id, start_date or end_date",
                            other.chars().take(64).collect::<String>()
                        ),
                    });
                }
            }
        }
        if let (Some(since), Some(until)) = (filter.since_ms, filter.until_ms)
            && until <= since
        {
            return Err(BadFilter {
                param: "end_date",
                message: "must be after start_date".to_owned(),
            });
        }
        Ok(filter)
    }
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// A date as Unix milliseconds. As an end (`end`), a bare date means the end of that day (the
/// next day's start, exclusive) and an instant includes itself.
pub fn parse_date(value: &str, end: bool, param: &'static str) -> Result<i64, BadFilter> {
    let bad = || BadFilter {
        param,
        message: format!(
            "expected YYYY-MM-DD, an RFC 3339 time (2025-01-31T12:00:00Z) or Unix seconds, got '{}'",
            value.chars().take(64).collect::<String>()
        ),
    };
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = v.parse().map_err(|_| bad())?;
        let ms = secs.checked_mul(1000).ok_or_else(bad)?;
        return Ok(if end { ms + 1 } else { ms });
    }
    let (date, time) = match v.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (v, None),
    };
    let day = parse_day(date).ok_or_else(bad)?;
    let Some(time) = time else {
        return Ok(if end { day + DAY_MS } else { day });
    };
    let ms = day + parse_time(time).ok_or_else(bad)?;
    Ok(if end { ms + 1 } else { ms })
}

/// `YYYY-MM-DD` as the Unix millisecond of its start (UTC).
fn parse_day(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY_MS)
}

/// `HH:MM:SS[.fff](Z|±HH:MM)` as milliseconds from midnight UTC (may leave the day).
fn parse_time(s: &str) -> Option<i64> {
    let (clock, offset_ms) = if let Some(c) = s.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = s.rfind(['+', '-'])?;
        let (c, off) = s.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off.get(1..)?.split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        if h > 23 || m > 59 {
            return None;
        }
        (c, sign * (h * 60 + m) * 60_000)
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let mut it = hms.splitn(3, ':');
    let (h, m, sec): (i64, i64, i64) = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let millis = match frac {
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: String = f.chars().chain("000".chars()).take(3).collect();
            digits.parse::<i64>().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    Some(((h * 60 + m) * 60 + sec) * 1000 + millis - offset_ms)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
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

/// A Unix millisecond as RFC 3339 UTC (`2025-01-31T12:00:00.000Z`).
pub fn format_millis(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rest = ms.rem_euclid(DAY_MS);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// The SQL both stores run, with what differs between their dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The placeholder sign: `?1` or `$1`.
    fn mark(self) -> char {
        match self {
            Self::Sqlite => '?',
            Self::Postgres => '$',
        }
    }

    /// How a text key is ordered: SQLite sorts NULL first and text bytewise; PostgreSQL is told
    /// to do the same, so both stores answer in one order.
    fn key_order(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " COLLATE \"C\" NULLS FIRST",
        }
    }
}

/// The sums of a set of records, in [`super::Totals`] order, typed alike in both databases
/// (PostgreSQL sums `BIGINT` as `NUMERIC` without the casts).
const SUMS: &str = "COUNT(*), CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), \
    CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT), \
    CAST(COALESCE(SUM(cache_read_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(cache_write_tokens), 0) AS BIGINT), \
    CAST(COALESCE(SUM(reasoning_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(cost_usd), 0.0) AS DOUBLE PRECISION), \
    CAST(COALESCE(SUM(CASE WHEN estimated THEN 1 ELSE 0 END), 0) AS BIGINT)";

/// The totals of the records `clause` selects.
pub(crate) fn totals_sql(clause: &str) -> String {
    format!("SELECT {SUMS} FROM usage_records {clause}")
}

/// The totals per value of `column` (`backend`, `model`, `session_id`: never client text),
/// most costly first, at most `limit` groups.
pub(crate) fn group_sql(dialect: Dialect, column: &str, clause: &str, limit: usize) -> String {
    let key_order = dialect.key_order();
    format!(
        "SELECT {column}, {SUMS} FROM usage_records {clause} GROUP BY {column} \
         ORDER BY 9 DESC, 5 DESC, {column}{key_order} LIMIT {limit}"
    )
}

/// The sums per time bucket and backend or model of `query`, in bucket then key order.
pub(crate) fn series_sql(
    dialect: Dialect,
    query: &super::series::SeriesQuery,
    clause: &str,
) -> String {
    // The width and the column come from enums, never from the client's text.
    let width = query.bucket.millis();
    let column = query.by.column();
    let key_order = dialect.key_order();
    let max = super::series::MAX_POINTS;
    format!(
        "SELECT (started_at / {width}) * {width} AS bucket, {column}, COUNT(*), \
         CAST(COALESCE(SUM(CASE WHEN outcome IN ('ok', 'client_disconnected') THEN 0 ELSE 1 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT), \
         CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(cost_usd), 0.0) AS DOUBLE PRECISION) \
         FROM usage_records {clause} GROUP BY bucket, {column} \
         ORDER BY bucket, {column}{key_order} LIMIT {max}"
    )
}

/// A value a filter condition compares with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FilterValue {
    Text(String),
    Int(i64),
}

/// `WHERE ...` for `filter` (empty when it selects everything) with the dialect's numbered
/// placeholders (`?1` or `$1`, ...), and the values in order.
pub(crate) fn where_clause(filter: &UsageFilter, dialect: Dialect) -> (String, Vec<FilterValue>) {
    let mark = dialect.mark();
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    for (column, value) in [
        ("backend", &filter.backend),
        ("model", &filter.model),
        ("session_id", &filter.session_id),
    ] {
        if let Some(v) = value {
            values.push(FilterValue::Text(v.clone()));
            conditions.push(format!("{column} = {mark}{}", values.len()));
        }
    }
    for (condition, bound) in [(">=", filter.since_ms), ("<", filter.until_ms)] {
        if let Some(ms) = bound {
            values.push(FilterValue::Int(ms));
            conditions.push(format!("started_at {condition} {mark}{}", values.len()));
        }
    }
    if conditions.is_empty() {
        (String::new(), values)
    } else {
        (format!("WHERE {}", conditions.join(" AND ")), values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_clauses_number_their_placeholders_in_each_dialect() {
        let filter = UsageFilter {
            model: Some("gpt-4o".into()),
            session_id: Some("s1".into()),
            since_ms: Some(10),
            until_ms: Some(20),
            ..UsageFilter::default()
        };
        let (sqlite, values) = where_clause(&filter, Dialect::Sqlite);
        assert_eq!(
            sqlite,
            "WHERE model = ?1 AND session_id = ?2 AND started_at >= ?3 AND started_at < ?4"
        );
        assert_eq!(
            values,
            [
                FilterValue::Text("gpt-4o".into()),
                FilterValue::Text("s1".into()),
                FilterValue::Int(10),
                FilterValue::Int(20)
            ]
        );
        let (postgres, _) = where_clause(&filter, Dialect::Postgres);
        assert!(postgres.ends_with("started_at < $4"), "{postgres}");
        assert_eq!(
            where_clause(&UsageFilter::default(), Dialect::Sqlite),
            (String::new(), Vec::new())
        );
    }

    #[test]
    fn dates_read_as_days_instants_and_unix_seconds() {
        let jan31 = parse_date("2025-01-31", false, "start_date").unwrap();
        assert_eq!(format_millis(jan31), "2025-01-31T00:00:00.000Z");
        assert_eq!(
            parse_date("2025-01-31", true, "end_date").unwrap(),
            jan31 + DAY_MS
        );
        assert_eq!(
            parse_date("2025-01-31T12:30:00Z", false, "x").unwrap(),
            jan31 + (12 * 60 + 30) * 60_000
        );
        assert_eq!(
            parse_date("2025-01-31T14:30:00.5+02:00", false, "x").unwrap(),
            jan31 + (12 * 60 + 30) * 60_000 + 500
        );
        assert_eq!(parse_date("1738281600", false, "x").unwrap(), jan31);
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_millis(parse_date("2024-02-29T23:59:59.999Z", false, "x").unwrap()),
            "2024-02-29T23:59:59.999Z"
        );
        for bad in [
            "",
            "yesterday",
            "2025-02-30",
            "2025-1-01",
            "2025-01-31T25:00:00Z",
            "99999999999999999999",
        ] {
            let err = parse_date(bad, false, "start_date").unwrap_err();
            assert_eq!(err.param, "start_date", "{bad}");
        }
    }

    #[test]
    fn filters_name_their_bad_parameter() {
        let f = UsageFilter::from_params(
            [
                ("backend", "openai"),
                ("start_date", "2025-01-01"),
                ("limit", "3"),
            ],
            &["limit"],
        )
        .unwrap();
        assert_eq!(f.backend.as_deref(), Some("openai"));
        assert!(f.since_ms.is_some());
        let err = UsageFilter::from_params([("nope", "1")], &[]).unwrap_err();
        assert!(err.message.contains("nope"));
        let err = UsageFilter::from_params(
            [("start_date", "2025-02-01"), ("end_date", "2025-01-01")],
            &[],
        )
        .unwrap_err();
        assert_eq!(err.param, "end_date");
    }
}
