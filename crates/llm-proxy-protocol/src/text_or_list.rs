//! `Deserialize` for the "a string or a list" fields every protocol has (message content,
//! `system`, a tool result's content, `stop`), in one pass over the JSON.
//!
//! serde's `#[serde(untagged)]` would first buffer the whole value (for content, the whole
//! message, every block and string in it) into an intermediate tree, then try each variant
//! against it: a second copy of the conversation, and for a bad part the unhelpful "data did
//! not match any variant". Here a string is read as the text, a list element by element, and
//! an error names the element's own path.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

/// What was found: the text, or the list.
pub(crate) enum TextOrList<T> {
    Text(String),
    List(Vec<T>),
}

/// Reads a string or a list of `T`; `what` says what the list holds, for errors.
pub(crate) fn deserialize<'de, D, T>(d: D, what: &'static str) -> Result<TextOrList<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Either<T>(&'static str, PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Either<T> {
        type Value = TextOrList<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a string or a list of {}", self.0)
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(TextOrList::Text(v.to_owned()))
        }

        fn visit_string<E: Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(TextOrList::Text(v))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            // A hint from the input is not trusted beyond a small first allocation.
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
            while let Some(item) = seq.next_element::<T>()? {
                items.push(item);
            }
            Ok(TextOrList::List(items))
        }
    }

    d.deserialize_any(Either(what, PhantomData))
}

/// Implements `Deserialize` for `enum $ty { $text(String), $list(Vec<$item>) }` with
/// [`deserialize`]; `Serialize` stays serde's untagged derive.
macro_rules! text_or_list {
    ($ty:ident { $text:ident, $list:ident($item:ty) } $what:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(
                    match $crate::text_or_list::deserialize::<D, $item>(d, $what)? {
                        $crate::text_or_list::TextOrList::Text(text) => Self::$text(text),
                        $crate::text_or_list::TextOrList::List(items) => Self::$list(items),
                    },
                )
            }
        }
    };
}

pub(crate) use text_or_list;

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, PartialEq, serde::Serialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<Part>),
    }

    #[derive(Debug, PartialEq, Deserialize, serde::Serialize)]
    struct Part {
        text: String,
    }

    text_or_list!(Content { Text, Parts(Part) } "parts");

    fn parse(json: &str) -> Result<Content, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn a_string_or_a_list_and_errors_at_the_bad_element() {
        assert_eq!(parse(r#""hi""#).unwrap(), Content::Text("hi".into()));
        assert_eq!(parse(r#""a\nb""#).unwrap(), Content::Text("a\nb".into()));
        assert_eq!(
            parse(r#"[{"text": "a"}, {"text": "b"}]"#).unwrap(),
            Content::Parts(vec![Part { text: "a".into() }, Part { text: "b".into() }])
        );
        assert_eq!(parse("[]").unwrap(), Content::Parts(Vec::new()));
        let bad = parse(r#"[{"text": "a"}, {"txt": "b"}]"#).unwrap_err();
        assert!(bad.starts_with("[1]: missing field `text`"), "{bad}");
        let bad = parse("5").unwrap_err();
        assert!(
            bad.contains("expected a string or a list of parts"),
            "{bad}"
        );
        // Serialized as before: untagged.
        assert_eq!(
            serde_json::to_string(&Content::Text("x".into())).unwrap(),
            r#""x""#
        );
        // From a value tree too (the path internally tagged enums take).
        let value = serde_json::json!([{"text": "v"}]);
        assert_eq!(
            Content::deserialize(value).unwrap(),
            Content::Parts(vec![Part { text: "v".into() }])
        );
    }
}
