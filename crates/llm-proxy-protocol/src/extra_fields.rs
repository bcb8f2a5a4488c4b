//! `Deserialize` for wire structs that keep unknown fields in an `extra` map, in one pass over
//! the JSON object. serde's `#[serde(flatten)]` would first buffer the whole object, nested
//! values and all, into an intermediate tree and then deserialize from that: on a request body
//! that is a second copy of the conversation, several times its size. Here known fields are
//! read straight into their types, unknown ones straight into the map.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, Visitor};

/// An object key, borrowed from the input when it has no escapes.
pub(crate) struct Key<'de>(Cow<'de, str>);

impl Key<'_> {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Implements `Deserialize` for a struct whose last field is `extra: Map<String, Value>`.
/// Each other field is listed with its JSON name (and aliases) and whether it is `required`
/// or `optional` (absent = `Default::default()`, like `#[serde(default)]`), or
/// `default(function)` (absent = `function()`).
///
/// ```ignore
/// deserialize_keeping_extra!(Body "a request" {
///     model: "model" => required,
///     tool_config: "toolConfig" | "tool_config" => optional,
/// });
/// ```
macro_rules! deserialize_keeping_extra {
    ($ty:ident $what:literal {
        $( $field:ident : $name:literal $(| $alias:literal)* => $how:ident $(($dflt:path))? ),* $(,)?
    }) => {
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> ::serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$ty, A::Error> {
                        $( let mut $field = None; )*
                        let mut extra = ::serde_json::Map::new();
                        while let Some(key) =
                            map.next_key::<$crate::extra_fields::Key<'de>>()?
                        {
                            match key.as_str() {
                                $( $name $(| $alias)* => {
                                    if $field.is_some() {
                                        return Err(<A::Error as ::serde::de::Error>::duplicate_field($name));
                                    }
                                    $field = Some(map.next_value()?);
                                } )*
                                _ => {
                                    let value: ::serde_json::Value = map.next_value()?;
                                    extra.insert(key.into_string(), value);
                                }
                            }
                        }
                        Ok($ty {
                            $( $field: deserialize_keeping_extra!(@finish $how $(($dflt))?, $field, $name, A), )*
                            extra,
                        })
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
    (@finish required, $field:ident, $name:literal, $a:ident) => {
        $field.ok_or_else(|| <$a::Error as ::serde::de::Error>::missing_field($name))?
    };
    (@finish optional, $field:ident, $name:literal, $a:ident) => {
        $field.unwrap_or_default()
    };
    (@finish default ($dflt:path), $field:ident, $name:literal, $a:ident) => {
        $field.unwrap_or_else($dflt)
    };
}

pub(crate) use deserialize_keeping_extra;

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    #[derive(Debug, PartialEq)]
    struct Probe {
        name: String,
        count: Option<u32>,
        items: Vec<String>,
        extra: Map<String, Value>,
    }

    deserialize_keeping_extra!(Probe "a probe" {
        name: "name" => required,
        count: "count" => optional,
        items: "items" | "item_list" => optional,
    });

    #[test]
    fn known_fields_typed_unknown_kept() {
        let p: Probe = serde_json::from_str(
            r#"{"x": {"deep": [1]}, "name": "n", "item_list": ["a"], "count": null}"#,
        )
        .unwrap();
        assert_eq!(p.name, "n");
        assert_eq!(p.count, None);
        assert_eq!(p.items, vec!["a"]);
        assert_eq!(Value::Object(p.extra), json!({"x": {"deep": [1]}}));
    }

    #[test]
    fn errors_name_the_field() {
        let e = crate::parse_body::<Probe>(br#"{"count": 1}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("name"), "{}", e.message);
        let e = crate::parse_body::<Probe>(br#"{"name": "n", "items": [1]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("items[0]"), "{}", e.message);
        let e = crate::parse_body::<Probe>(br#"{"name": "n", "name": "m"}"#).unwrap_err();
        assert!(e.message.contains("duplicate field"), "{}", e.message);
        let e = crate::parse_body::<Probe>(br#"[1]"#).unwrap_err();
        assert!(e.message.contains("a probe"), "{}", e.message);
    }
}
