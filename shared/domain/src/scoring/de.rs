//! Deserialisation that validates *inside* the value being read, so that a YAML parser pins an
//! error to that value's line and column (a `#[serde(try_from)]` error surfaces only after the
//! value was read, and the parser then reports the enclosing mapping instead).

use std::fmt::{self, Display};
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Reads a mapping as `Def`, then converts it with `f`, reporting `f`'s error at the mapping.
pub(crate) fn map_then<'de, D, Def, T, E>(
    d: D,
    f: impl FnOnce(Def) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    Def: Deserialize<'de>,
    E: Display,
{
    struct V<F, Def>(F, PhantomData<Def>);
    impl<'de, F, Def, T, E> Visitor<'de> for V<F, Def>
    where
        F: FnOnce(Def) -> Result<T, E>,
        Def: Deserialize<'de>,
        E: Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let def = Def::deserialize(MapAccessDeserializer::new(map))?;
            (self.0)(def).map_err(de::Error::custom)
        }
    }
    d.deserialize_map(V(f, PhantomData))
}

/// Reads a sequence of `Item`, then checks it with `f`, reporting `f`'s error at the sequence.
pub(crate) fn seq_then<'de, D, Item, E>(
    d: D,
    f: impl FnOnce(&[Item]) -> Result<(), E>,
) -> Result<Vec<Item>, D::Error>
where
    D: Deserializer<'de>,
    Item: Deserialize<'de>,
    E: Display,
{
    struct V<F, Item>(F, PhantomData<Item>);
    impl<'de, F, Item, E> Visitor<'de> for V<F, Item>
    where
        F: FnOnce(&[Item]) -> Result<(), E>,
        Item: Deserialize<'de>,
        E: Display,
    {
        type Value = Vec<Item>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<Item>, A::Error> {
            let items = Vec::<Item>::deserialize(SeqAccessDeserializer::new(seq))?;
            (self.0)(&items).map_err(de::Error::custom)?;
            Ok(items)
        }
    }
    d.deserialize_seq(V(f, PhantomData))
}

/// Reads a string and converts it with `f`, reporting `f`'s error at the string.
pub(crate) fn str_then<'de, D, T, E>(
    d: D,
    f: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: Display,
{
    struct V<F>(F);
    impl<'de, F, T, E> Visitor<'de> for V<F>
    where
        F: FnOnce(&str) -> Result<T, E>,
        E: Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<Er: de::Error>(self, v: &str) -> Result<T, Er> {
            (self.0)(v).map_err(Er::custom)
        }
    }
    d.deserialize_str(V(f))
}

/// Reads a number and converts it with `f`, reporting `f`'s error at the number.
pub(crate) fn num_then<'de, D, T, E>(
    d: D,
    f: impl FnOnce(f64) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: Display,
{
    struct V<F>(F);
    impl<'de, F, T, E> Visitor<'de> for V<F>
    where
        F: FnOnce(f64) -> Result<T, E>,
        E: Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_f64<Er: de::Error>(self, v: f64) -> Result<T, Er> {
            (self.0)(v).map_err(Er::custom)
        }
        fn visit_i64<Er: de::Error>(self, v: i64) -> Result<T, Er> {
            self.visit_f64(v as f64)
        }
        fn visit_u64<Er: de::Error>(self, v: u64) -> Result<T, Er> {
            self.visit_f64(v as f64)
        }
    }
    d.deserialize_f64(V(f))
}
