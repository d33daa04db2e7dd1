//! Reading a JSON document with positions: every value keeps where it stood in the text,
//! so that an error names the file, line and column of the key that caused it. Keys match
//! without regard to case, as in DSSTNE.

use crate::error::{Error, Result};
use jsonc_parser::ast::{Object, Value};
use jsonc_parser::common::Range;
use jsonc_parser::{parse_to_ast, CollectOptions, ParseOptions};

/// The text being read and its name, for error positions.
pub struct Document<'t> {
    text: &'t str,
    source: &'t str,
}

/// One `key: value` pair of an object.
pub struct Field<'a> {
    /// The key as written.
    pub name: &'a str,
    /// The key lower-cased, for matching.
    pub key: String,
    pub value: &'a Value<'a>,
    range: Range,
}

impl<'t> Document<'t> {
    /// Wraps `text`, named `source` in errors.
    pub fn new(text: &'t str, source: &'t str) -> Self {
        Document { text, source }
    }

    /// Parses the text (JSON, with comments allowed as DSSTNE's parser allows them).
    pub fn parse(&self) -> Result<Value<'t>> {
        let options = ParseOptions {
            allow_missing_commas: false,
            allow_loose_object_property_names: false,
            allow_non_finite_numbers: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            ..ParseOptions::default()
        };
        let parsed = parse_to_ast(self.text, &CollectOptions::default(), &options)
            .map_err(|e| self.error_at(e.range().start, &e.kind().to_string()))?;
        parsed
            .value
            .ok_or_else(|| self.error_at(0, "the file holds no JSON value"))
    }

    /// `source:line:column` of a byte offset.
    fn position(&self, offset: usize) -> String {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{column}", self.source)
    }

    fn error_at(&self, offset: usize, message: &str) -> Error {
        Error::Config(format!("{}: {message}", self.position(offset)))
    }

    /// An error located at a value.
    pub fn error(&self, value: &Value, message: &str) -> Error {
        self.error_at(range_of(value).start, message)
    }

    /// An error located at a field's key.
    pub fn field_error(&self, field: &Field, message: &str) -> Error {
        self.error_at(field.range.start, message)
    }

    /// The fields of an object, rejecting keys given twice (in any case).
    pub fn fields<'a>(&self, value: &'a Value<'a>, what: &str) -> Result<Vec<Field<'a>>> {
        let object = self.object(value, what)?;
        let mut fields: Vec<Field<'a>> = Vec::with_capacity(object.properties.len());
        for property in &object.properties {
            let name = property.name.as_str();
            let key = name.to_lowercase();
            if let Some(first) = fields.iter().find(|f| f.key == key) {
                return Err(self.error_at(
                    property.range.start,
                    &format!(
                        "'{name}' is given twice in {what} (first as '{}')",
                        first.name
                    ),
                ));
            }
            fields.push(Field {
                name,
                key,
                value: &property.value,
                range: property.range,
            });
        }
        Ok(fields)
    }

    fn object<'a>(&self, value: &'a Value<'a>, what: &str) -> Result<&'a Object<'a>> {
        match value {
            Value::Object(object) => Ok(object),
            other => Err(self.error(other, &format!("{what} must be an object"))),
        }
    }

    /// An error for a key that `what` does not have.
    pub fn unknown(&self, field: &Field, what: &str, known: &[&str]) -> Error {
        self.field_error(
            field,
            &format!(
                "unknown key '{}' in {what} (known keys: {})",
                field.name,
                known.join(", ")
            ),
        )
    }

    /// A finite number.
    pub fn number(&self, field: &Field, what: &str) -> Result<f32> {
        match field.value {
            Value::NumberLit(n) => n
                .value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| v as f32)
                .ok_or_else(|| {
                    self.field_error(
                        field,
                        &format!("'{}' in {what} is not a finite number", field.name),
                    )
                }),
            _ => Err(self.field_error(
                field,
                &format!("'{}' in {what} must be a number", field.name),
            )),
        }
    }

    /// A probability in `[0, 1)`.
    pub fn probability(&self, field: &Field, what: &str) -> Result<f32> {
        let p = self.number(field, what)?;
        if !(0.0..1.0).contains(&p) {
            return Err(self.field_error(
                field,
                &format!("'{}' in {what} must be in [0, 1), not {p}", field.name),
            ));
        }
        Ok(p)
    }

    /// A whole number of at least 1.
    pub fn count(&self, value: &Value, what: &str) -> Result<usize> {
        match value {
            Value::NumberLit(n) => {
                n.value
                    .parse::<usize>()
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| {
                        self.error(
                            value,
                            &format!("{what} must be a whole number above 0, not {}", n.value),
                        )
                    })
            }
            _ => Err(self.error(value, &format!("{what} must be a whole number"))),
        }
    }

    /// A boolean.
    pub fn boolean(&self, field: &Field, what: &str) -> Result<bool> {
        match field.value {
            Value::BooleanLit(b) => Ok(b.value),
            _ => Err(self.field_error(
                field,
                &format!("'{}' in {what} must be true or false", field.name),
            )),
        }
    }

    /// A string.
    pub fn string(&self, field: &Field, what: &str) -> Result<String> {
        match field.value {
            Value::StringLit(s) => Ok(s.value.to_string()),
            _ => Err(self.field_error(
                field,
                &format!("'{}' in {what} must be a string", field.name),
            )),
        }
    }

    /// One string or a list of strings.
    pub fn strings(&self, field: &Field, what: &str) -> Result<Vec<String>> {
        let item = |value: &Value| match value {
            Value::StringLit(s) => Ok(s.value.to_string()),
            other => Err(self.error(
                other,
                &format!("'{}' in {what} must name layers as strings", field.name),
            )),
        };
        match field.value {
            Value::Array(array) => array.elements.iter().map(item).collect(),
            other => Ok(vec![item(other)?]),
        }
    }

    /// One of several names, matched without regard to case; the error lists them.
    pub fn choice<T: Copy>(&self, field: &Field, what: &str, choices: &[(&str, T)]) -> Result<T> {
        let text = self.string(field, what)?;
        let wanted = text.to_lowercase();
        choices
            .iter()
            .find(|(name, _)| name.to_lowercase() == wanted)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.field_error(
                    field,
                    &format!(
                        "'{}' in {what} cannot be '{text}' (accepted: {})",
                        field.name,
                        names.join(", ")
                    ),
                )
            })
    }
}

fn range_of(value: &Value) -> Range {
    match value {
        Value::StringLit(v) => v.range,
        Value::NumberLit(v) => v.range,
        Value::BooleanLit(v) => v.range,
        Value::Object(v) => v.range,
        Value::Array(v) => v.range,
        Value::NullKeyword(v) => v.range,
    }
}
