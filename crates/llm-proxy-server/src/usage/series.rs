//! Usage over time: records summed per time bucket (minute, hour or UTC day) and per backend
//! or model ([`SeriesQuery`] -> [`UsageSeries`]), the answer of `GET /v1/usage/series` and
//! what the dashboard charts. Buckets are computed by the store in SQL
//! (`(started_at / bucket) * bucket`, integer arithmetic both SQLite and PostgreSQL share);
//! empty buckets are left out.

use std::collections::HashMap;

use serde::Serialize;

use super::UsageFilter;
use super::query::BadFilter;

/// Buckets a series spans at most (a day by minute).
pub const MAX_BUCKETS: i64 = 1440;
/// Rows (bucket × group) a store returns at most.
pub const MAX_POINTS: usize = 100_000;

/// The width of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// 60 s.
    Minute,
    /// 3600 s.
    Hour,
    /// 86 400 s (UTC days).
    Day,
}

impl Bucket {
    /// Its width in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }

    /// How many buckets a series covers when the query names no start date: an hour by
    /// minute, two days by hour, thirty days by day.
    pub fn default_span(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 48,
            Self::Day => 30,
        }
    }

    /// Its name in the query string.
    pub fn label(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    fn parse(value: &str) -> Result<Self, BadFilter> {
        match value.trim() {
            "minute" => Ok(Self::Minute),
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            _ => Err(BadFilter {
                param: "bucket",
                message: "expected minute, hour or day".to_owned(),
            }),
        }
    }
}

/// What a series is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesBy {
    /// Backend instance.
    Backend,
    /// Model.
    Model,
}

impl SeriesBy {
    /// The column (and the JSON key naming a group).
    pub fn column(self) -> &'static str {
        match self {
            Self::Backend => "backend",
            Self::Model => "model",
        }
    }

    fn parse(value: &str) -> Result<Self, BadFilter> {
        match value.trim() {
            "backend" => Ok(Self::Backend),
            "model" => Ok(Self::Model),
            _ => Err(BadFilter {
                param: "by",
                message: "expected backend or model".to_owned(),
            }),
        }
    }
}

/// A series to compute: the records `filter` selects (its dates always set), by `bucket`,
/// grouped `by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesQuery {
    /// Which records; `since_ms` is the first bucket's start, `until_ms` the end.
    pub filter: UsageFilter,
    /// Bucket width.
    pub bucket: Bucket,
    /// Grouping.
    pub by: SeriesBy,
}

impl SeriesQuery {
    /// The query of `GET /v1/usage/series`: `bucket` (default `minute`), `by` (default
    /// `backend`) and the usual filters, `now_ms` standing for a missing end date. The start
    /// is rounded down to a bucket boundary; a range over [`MAX_BUCKETS`] buckets is refused.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
        now_ms: i64,
    ) -> Result<Self, BadFilter> {
        let mut filter = UsageFilter::from_params(params.clone(), &["bucket", "by"])?;
        let mut bucket = Bucket::Minute;
        let mut by = SeriesBy::Backend;
        for (name, value) in params {
            match name {
                "bucket" => bucket = Bucket::parse(value)?,
                "by" => by = SeriesBy::parse(value)?,
                _ => {}
            }
        }
        let width = bucket.millis();
        let until = filter.until_ms.unwrap_or(now_ms.saturating_add(1));
        let since = filter
            .since_ms
            .unwrap_or_else(|| until.saturating_sub(width.saturating_mul(bucket.default_span())));
        let since = since.div_euclid(width).saturating_mul(width);
        if until <= since {
            return Err(BadFilter {
                param: "end_date",
                message: "must be after start_date".to_owned(),
            });
        }
        if (until - since).div_euclid(width) >= MAX_BUCKETS {
            return Err(BadFilter {
                param: "bucket",
                message: format!(
                    "the range spans more than {MAX_BUCKETS} {}s; use a larger bucket or a shorter range",
                    bucket.label()
                ),
            });
        }
        filter.since_ms = Some(since);
        filter.until_ms = Some(until);
        Ok(Self { filter, bucket, by })
    }
}

/// The sums of one bucket of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// The bucket's start, Unix milliseconds.
    pub t: i64,
    /// The group (`None`: records without one, e.g. no backend reached).
    #[serde(skip)]
    pub key: Option<String>,
    /// Requests.
    pub requests: u64,
    /// Requests that ended in an error (outcome neither `ok` nor `client_disconnected`).
    pub errors: u64,
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
    /// Cost in US dollars of the records with a known price.
    pub cost_usd: f64,
}

/// A computed series: points ordered by bucket, then group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageSeries {
    /// The points (empty buckets left out).
    pub points: Vec<SeriesPoint>,
}

impl UsageSeries {
    /// The JSON of `GET /v1/usage/series`: the range and bucket, and one entry per group
    /// (named by `backend` or `model`) with its points in time order.
    pub fn to_json(&self, query: &SeriesQuery) -> serde_json::Value {
        // Groups in order of first appearance; the index keeps this linear in the points.
        let mut groups: Vec<(Option<&str>, Vec<&SeriesPoint>)> = Vec::new();
        let mut index: HashMap<Option<&str>, usize> = HashMap::new();
        for p in &self.points {
            let key = p.key.as_deref();
            let at = *index.entry(key).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            if let Some((_, list)) = groups.get_mut(at) {
                list.push(p);
            }
        }
        let name = query.by.column();
        let series: Vec<serde_json::Value> = groups
            .into_iter()
            .map(|(key, points)| serde_json::json!({ name: key, "points": points }))
            .collect();
        serde_json::json!({
            "bucket": query.bucket.label(),
            "bucket_ms": query.bucket.millis(),
            "by": name,
            "start_ms": query.filter.since_ms,
            "end_ms": query.filter.until_ms,
            "series": series,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_the_last_hour_by_minute_from_a_bucket_boundary() {
        let now = 1_700_000_123_456;
        let q = SeriesQuery::from_params(std::iter::empty::<(&str, &str)>(), now).unwrap();
        assert_eq!((q.bucket, q.by), (Bucket::Minute, SeriesBy::Backend));
        let since = q.filter.since_ms.unwrap();
        assert_eq!(since % 60_000, 0);
        assert!(since <= now - 3_600_000 && since > now - 3_660_000);
        assert_eq!(q.filter.until_ms, Some(now + 1));
    }

    #[test]
    fn parameters_are_read_and_bad_ones_named() {
        let q = SeriesQuery::from_params(
            [("bucket", "day"), ("by", "model"), ("backend", "mock")],
            1_700_000_000_000,
        )
        .unwrap();
        assert_eq!((q.bucket, q.by), (Bucket::Day, SeriesBy::Model));
        assert_eq!(q.filter.backend.as_deref(), Some("mock"));
        for (params, param) in [
            (vec![("bucket", "week")], "bucket"),
            (vec![("by", "session")], "by"),
            (vec![("colour", "red")], "query"),
            (
                vec![("bucket", "minute"), ("start_date", "2020-01-01")],
                "bucket",
            ),
        ] {
            let err = SeriesQuery::from_params(params, 1_700_000_000_000).unwrap_err();
            assert_eq!(err.param, param);
        }
    }

    #[test]
    fn points_are_grouped_by_key_in_order() {
        let q = SeriesQuery::from_params([("by", "model")], 1_700_000_000_000).unwrap();
        let point = |t, key: &str, requests| SeriesPoint {
            t,
            key: Some(key.to_owned()),
            requests,
            ..SeriesPoint::default()
        };
        let series = UsageSeries {
            points: vec![point(0, "a", 1), point(0, "b", 2), point(60_000, "a", 3)],
        };
        let json = series.to_json(&q);
        assert_eq!(json["by"], "model");
        assert_eq!(json["series"][0]["model"], "a");
        assert_eq!(json["series"][0]["points"][1]["t"], 60_000);
        assert_eq!(json["series"][0]["points"][1]["requests"], 3);
        assert_eq!(json["series"][1]["model"], "b");
        assert!(json["series"][0]["points"][0].get("key").is_none());
    }
}
