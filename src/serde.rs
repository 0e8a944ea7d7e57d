//! The `serde` feature: any `Serialize` type into a script value and any
//! `Deserialize` type out of one, by wrapping it in [`Serde`].
//!
//! The bridge goes through `serde_json::Value`, whose data model (null, bool, number,
//! string, array, string-keyed map) is the plain-data part of Kiln's: structs become
//! maps of their fields, enums serde's usual externally tagged form. Script map keys
//! that are not strings become their display form on the way out.

use kiln_vm::value::Value as Raw;
use kiln_vm::{Fault, Vm};
use serde_json::Value as Json;

use crate::convert::{FromValue, IntoValue, Value};

/// A value converted with serde: `Serde(config)` as an argument, `Serde<Config>` as a
/// result type.
#[derive(Clone, Debug, PartialEq)]
pub struct Serde<T>(pub T);

impl<T: serde::Serialize> IntoValue for Serde<T> {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        let json = serde_json::to_value(&self.0).map_err(|e| Fault::Error(e.to_string()))?;
        from_json(json).into_value(vm)
    }
}

impl<T: serde::de::DeserializeOwned> FromValue for Serde<T> {
    fn from_value(v: Raw, vm: &Vm) -> Result<Self, String> {
        let json = to_json(Value::from_value(v, vm)?)?;
        serde_json::from_value(json)
            .map(Serde)
            .map_err(|e| format!("{} ({e})", std::any::type_name::<T>()))
    }
}

fn from_json(json: Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Str(s),
        Json::Array(items) => Value::Array(items.into_iter().map(from_json).collect()),
        Json::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (Value::Str(k), from_json(v)))
                .collect(),
        ),
    }
}

fn to_json(v: Value) -> Result<Json, String> {
    Ok(match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(b),
        Value::Int(i) => Json::from(i),
        Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or("a finite float")?,
        Value::Str(s) => Json::String(s),
        Value::Array(items) => {
            Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Value::Map(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(k, v)| Ok((key_text(k), to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Value::Opaque(ty) => return Err(format!("plain data (got {ty})")),
    })
}

fn key_text(k: Value) -> String {
    match k {
        Value::Str(s) => s,
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}
