//! Option maps — a script's `#{lr: 1e-3, steps: 100}`, a JSON object — read
//! into typed configs with serde. serde's own messages say what was wrong
//! ("invalid type: string, expected f64") but not where; a user with a typo
//! in one of twenty options needs the key, so every error here names it:
//! `train: option 'lr' must be a number, got string "fast"`,
//! `sae: unknown option 'bogus' (known: d_in, n_features, ...)`.
use crate::{Error, Result};
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::fmt::Display;
use std::str::FromStr;

/// Options by name, as a script or a JSON file gives them.
pub type OptionMap = Map<String, Value>;

/// `T` from `options`; `context` ("train", "sae") starts every error message.
pub fn from_options<T: DeserializeOwned>(context: &str, options: &OptionMap) -> Result<T> {
    let mut access = KeyedEntries {
        entries: options.iter(),
        value: None,
        key: None,
        in_value: false,
    };
    T::deserialize(de::value::MapAccessDeserializer::new(&mut access))
        .map_err(|e| Error::invalid(describe::<T>(context, &access, &e)))
}

/// `defaults` with every option in `options` put over it: for configs whose
/// defaults depend on other settings (TopK's k on n_features), so serde's
/// static `#[serde(default)]` cannot give them.
pub fn overlay<T: Serialize + DeserializeOwned>(
    context: &str,
    defaults: &T,
    options: &OptionMap,
) -> Result<T> {
    let Value::Object(mut merged) =
        serde_json::to_value(defaults).map_err(|e| Error::invalid(format!("{context}: {e}")))?
    else {
        return Err(Error::invalid(format!(
            "{context}: the settings are not a map of options"
        )));
    };
    merged.extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
    from_options(context, &merged)
}

/// For `#[serde(default, deserialize_with = "by_name")]` on an optional
/// setting named by a string ("bf16", "auxk"): parsed by its `FromStr`, so
/// the parser's own message, which lists the known names, reaches the user.
pub fn by_name<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    Option::<String>::deserialize(d)?
        .map(|name| name.parse().map_err(de::Error::custom))
        .transpose()
}

/// The option names a config struct accepts (serde's field names, after
/// renames), for the "known: ..." list of an error and for splitting one
/// map among several configs.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe records the struct's fields and stops: only the names are wanted.
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

/// A map's entries handed to serde one by one, remembering which key is
/// being read so an error can name it.
struct KeyedEntries<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
    key: Option<&'a str>,
    /// True while the current key's value is being read (an error there is
    /// a bad value); false while the key itself is (an error there is an
    /// unknown key).
    in_value: bool,
}

impl<'de, 'a> MapAccess<'de> for KeyedEntries<'a> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, Self::Error> {
        self.in_value = false;
        match self.entries.next() {
            Some((key, value)) => {
                self.key = Some(key);
                self.value = Some(value);
                seed.deserialize(de::value::StrDeserializer::new(key))
                    .map(Some)
            }
            None => {
                self.key = None;
                Ok(None)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        self.in_value = true;
        match self.value.take() {
            Some(value) => seed.deserialize(value.clone()),
            None => Err(de::Error::custom("a value was read twice")),
        }
    }
}

fn describe<T: DeserializeOwned>(
    context: &str,
    access: &KeyedEntries,
    error: &serde_json::Error,
) -> String {
    let message = error.to_string();
    match (access.key, access.in_value) {
        (Some(key), false) => format!(
            "{context}: unknown option '{key}' (known: {})",
            field_names::<T>().join(", ")
        ),
        (Some(key), true) => format!("{context}: option '{key}' {}", readable(&message)),
        (None, _) => match message.strip_prefix("missing field `") {
            Some(rest) => format!(
                "{context}: option '{}' is required",
                rest.trim_end_matches('`')
            ),
            None => format!("{context}: {message}"),
        },
    }
}

/// serde's "invalid type: string \"fast\", expected f64" as a script
/// author reads it: "must be a number, got string \"fast\"".
fn readable(message: &str) -> String {
    let parts = ["invalid type: ", "invalid value: "]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.rsplit_once(", expected "));
    let Some((got, expected)) = parts else {
        return format!("is invalid: {message}");
    };
    let expected = match expected {
        "f64" | "f32" => "a number",
        "u64" | "u32" | "usize" => "an integer >= 0",
        "i64" | "i32" | "isize" => "an integer",
        "a boolean" => "true or false",
        "a nonzero usize" => "a positive integer",
        other => other,
    };
    format!("must be {expected}, got {got}")
}

/// A deserializer that only records the field names of the struct asked for.
struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs have field names"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        lr: f64,
        #[serde(rename = "steps")]
        step_count: u64,
        name: Option<String>,
    }

    fn map(value: Value) -> OptionMap {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn an_integer_fills_a_float_and_null_is_absent() {
        let got: Example =
            from_options("t", &map(json!({"lr": 1, "steps": 3, "name": null}))).unwrap();
        assert_eq!(
            got,
            Example {
                lr: 1.0,
                step_count: 3,
                name: None
            }
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = from_options::<Example>("t", &map(json!({"lr": 1, "steps": 3, "bogus": 1})))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t: unknown option 'bogus' (known: lr, steps, name)"),
            "{err}"
        );
        let err = from_options::<Example>("t", &map(json!({"lr": "fast", "steps": 3})))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t: option 'lr' must be a number, got string \"fast\""),
            "{err}"
        );
        let err = from_options::<Example>("t", &map(json!({"lr": 1, "steps": 2.5})))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("option 'steps' must be an integer >= 0"),
            "{err}"
        );
        let err = from_options::<Example>("t", &map(json!({"lr": 1})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("t: option 'steps' is required"), "{err}");
    }

    #[test]
    fn overlay_keeps_the_defaults_not_given() {
        let defaults = Example {
            lr: 0.5,
            step_count: 10,
            name: Some("a".into()),
        };
        let got = overlay("t", &defaults, &map(json!({"steps": 20}))).unwrap();
        assert_eq!((got.lr, got.step_count), (0.5, 20));
        assert_eq!(field_names::<Example>(), ["lr", "steps", "name"]);
    }
}
