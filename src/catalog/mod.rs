//! The document type and purpose catalog (SPEC §2): data, not code.
//!
//! The catalog ships in `src/catalog/catalog.json` (embedded in the binary) and may be
//! replaced by the file `CUSTODIA_CATALOG_FILE` names. It is validated at start; a bad
//! catalog stops the server with a message naming the entry at fault.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, invalid};
pub use crate::status::Tier;

/// The catalog shipped with Custodia.
pub const BUILTIN: &str = include_str!("catalog.json");

/// Longest accepted field value, in characters.
pub const MAX_VALUE_CHARS: usize = 1000;

/// Names in both UI languages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Names {
    /// Simplified Chinese.
    #[serde(rename = "zh-CN")]
    pub zh_cn: String,
    /// English.
    pub en: String,
}

/// The kind of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Free text.
    Text,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A decimal number.
    Number,
    /// One of `values`.
    Enum,
}

/// One field of a document type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Field name, as used in requests and grants.
    pub name: String,
    /// Kind of value.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Whether every document of the type must have it.
    pub required: bool,
    /// A regular expression a text value must match in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Allowed values of an enum field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// A valid example value.
    pub example: String,
}

/// Who may receive a type without asking, with conditions, or never (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharingClass {
    /// Shareable under any grant.
    Unconditional,
    /// Shareable only with a legal basis.
    Conditional,
    /// Never shared.
    None,
}

/// How much harm a disclosure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

/// A document type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentType {
    /// Stable id, e.g. `business_license`.
    pub id: String,
    /// Display names.
    pub names: Names,
    /// Fields, in display order.
    pub fields: Vec<FieldSpec>,
    /// Whether a document of this type carries a file.
    pub has_file: bool,
    /// Sharing class.
    pub sharing_class: SharingClass,
    /// Sensitivity.
    pub sensitivity: Sensitivity,
}

/// A purpose an agency may ask under.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    /// Stable code, e.g. `business_registration`.
    pub code: String,
    /// Display names.
    pub names: Names,
    /// Types it may ask for.
    pub document_types: Vec<String>,
    /// Highest tier it may ask for.
    pub max_tier: Tier,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    document_types: Vec<DocumentType>,
    purposes: Vec<Purpose>,
}

/// The validated catalog.
#[derive(Debug)]
pub struct Catalog {
    file: CatalogFile,
    patterns: BTreeMap<(String, String), Regex>,
}

/// A catalog entry that does not hold together.
#[derive(Debug, thiserror::Error)]
#[error("catalog entry '{entry}': {message}")]
pub struct CatalogError {
    /// The entry at fault (`type_id`, `type_id.field` or `purpose:code`).
    pub entry: String,
    /// What is wrong.
    pub message: String,
}

fn entry_error(entry: impl Into<String>, message: impl Into<String>) -> CatalogError {
    CatalogError {
        entry: entry.into(),
        message: message.into(),
    }
}

impl Catalog {
    /// Parses and validates a catalog document.
    pub fn parse(json: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = serde_json::from_str(json)
            .map_err(|e| entry_error("(file)", format!("not a valid catalog: {e}")))?;
        let mut patterns = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for t in &file.document_types {
            if !valid_id(&t.id) {
                return Err(entry_error(&t.id, "id must be lower_snake_case"));
            }
            if !ids.insert(t.id.clone()) {
                return Err(entry_error(&t.id, "duplicate document type id"));
            }
            if t.names.zh_cn.trim().is_empty() || t.names.en.trim().is_empty() {
                return Err(entry_error(&t.id, "needs zh-CN and en names"));
            }
            if t.fields.is_empty() {
                return Err(entry_error(&t.id, "has no fields"));
            }
            let mut names = BTreeSet::new();
            for f in &t.fields {
                let entry = format!("{}.{}", t.id, f.name);
                if !valid_id(&f.name) || !names.insert(f.name.clone()) {
                    return Err(entry_error(
                        entry,
                        "field names must be unique lower_snake_case",
                    ));
                }
                if (f.kind == FieldType::Enum) == f.values.is_empty() {
                    return Err(entry_error(
                        entry,
                        "enum fields, and only they, list values",
                    ));
                }
                if let Some(p) = &f.pattern {
                    let re = Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                        entry_error(&entry, format!("pattern does not compile: {e}"))
                    })?;
                    patterns.insert((t.id.clone(), f.name.clone()), re);
                }
            }
        }
        let mut codes = BTreeSet::new();
        for p in &file.purposes {
            let entry = format!("purpose:{}", p.code);
            if !valid_id(&p.code) || !codes.insert(p.code.clone()) {
                return Err(entry_error(
                    entry,
                    "purpose codes must be unique lower_snake_case",
                ));
            }
            for t in &p.document_types {
                match file.document_types.iter().find(|d| &d.id == t) {
                    None => return Err(entry_error(&entry, format!("names unknown type '{t}'"))),
                    Some(d) if d.sharing_class == SharingClass::None => {
                        return Err(entry_error(&entry, format!("'{t}' is never shared")));
                    }
                    Some(_) => {}
                }
            }
        }
        let catalog = Self { file, patterns };
        // Every example must pass its own field's validation.
        for t in &catalog.file.document_types {
            for f in &t.fields {
                catalog.check_value(t, f, &f.example).map_err(|e| {
                    entry_error(
                        format!("{}.{}", t.id, f.name),
                        format!("example is invalid: {e}"),
                    )
                })?;
            }
        }
        Ok(catalog)
    }

    /// Loads the file at `path`, or the built-in catalog.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, CatalogError> {
        match path {
            None => Self::parse(BUILTIN),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| entry_error("(file)", format!("{}: {e}", p.display())))?;
                Self::parse(&text)
            }
        }
    }

    /// Every document type.
    pub fn document_types(&self) -> &[DocumentType] {
        &self.file.document_types
    }

    /// Every purpose.
    pub fn purposes(&self) -> &[Purpose] {
        &self.file.purposes
    }

    /// The type with this id.
    pub fn document_type(&self, id: &str) -> Option<&DocumentType> {
        self.file.document_types.iter().find(|t| t.id == id)
    }

    /// The purpose with this code.
    pub fn purpose(&self, code: &str) -> Option<&Purpose> {
        self.file.purposes.iter().find(|p| p.code == code)
    }

    /// Validates a document's fields against its type: an object of the type's fields
    /// only, every required one present, every value valid. Numbers may come as JSON
    /// numbers; all values are kept as strings.
    pub fn validate_fields(
        &self,
        doc_type: &DocumentType,
        fields: &serde_json::Value,
    ) -> Result<BTreeMap<String, String>, Error> {
        let object = fields
            .as_object()
            .ok_or_else(|| invalid("fields", "must be a JSON object of field names to values"))?;
        let mut out = BTreeMap::new();
        for (name, value) in object {
            let spec = doc_type
                .fields
                .iter()
                .find(|f| &f.name == name)
                .ok_or_else(|| {
                    invalid(
                        "fields",
                        format!("'{name}' is not a field of {}", doc_type.id),
                    )
                })?;
            let text = match value {
                serde_json::Value::String(s) => s.trim().to_owned(),
                serde_json::Value::Number(n) if spec.kind == FieldType::Number => n.to_string(),
                serde_json::Value::Null => continue,
                _ => return Err(invalid("fields", format!("'{name}' must be a string"))),
            };
            if text.is_empty() {
                continue;
            }
            self.check_value(doc_type, spec, &text)
                .map_err(|m| invalid("fields", format!("'{name}' {m}")))?;
            out.insert(name.clone(), text);
        }
        if let Some(missing) = doc_type
            .fields
            .iter()
            .find(|f| f.required && !out.contains_key(&f.name))
        {
            return Err(invalid("fields", format!("'{}' is required", missing.name)));
        }
        Ok(out)
    }

    fn check_value(&self, t: &DocumentType, f: &FieldSpec, value: &str) -> Result<(), String> {
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(format!("must be at most {MAX_VALUE_CHARS} characters"));
        }
        if !value.chars().all(crate::error::is_displayable) {
            return Err(
                "must not contain control characters or invisible formatting (such as bidirectional overrides)"
                    .into(),
            );
        }
        match f.kind {
            FieldType::Text => {}
            FieldType::Date => {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                time::Date::parse(value, format)
                    .map_err(|_| "must be a date like 2024-01-31".to_owned())?;
            }
            FieldType::Number => {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| "must be a number".to_owned())?;
            }
            FieldType::Enum => {
                if !f.values.iter().any(|v| v == value) {
                    return Err(format!("must be one of: {}", f.values.join(", ")));
                }
            }
        }
        if let Some(re) = self.patterns.get(&(t.id.clone(), f.name.clone()))
            && !re.is_match(value)
        {
            return Err(format!(
                "does not have the expected format (e.g. {})",
                f.example
            ));
        }
        Ok(())
    }

    /// The public JSON form (`GET /api/v1/catalog`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.file).unwrap_or_default()
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_builtin_catalog_is_valid_and_complete() {
        let c = Catalog::parse(BUILTIN).unwrap();
        for id in [
            "resident_id",
            "household_register",
            "business_license",
            "tax_clearance",
            "degree_certificate",
            "marriage_certificate",
            "social_insurance_record",
            "property_deed",
        ] {
            assert!(c.document_type(id).is_some(), "{id}");
        }
        assert!(c.purpose("business_registration").is_some());
    }

    #[test]
    fn a_bad_entry_is_named() {
        let mut file: serde_json::Value = serde_json::from_str(BUILTIN).unwrap();
        file["document_types"][2]["fields"][1]["example"] = json!("not a code");
        let err = Catalog::parse(&file.to_string()).unwrap_err();
        assert_eq!(err.entry, "business_license.unified_social_credit_code");
        let mut file: serde_json::Value = serde_json::from_str(BUILTIN).unwrap();
        file["purposes"][0]["document_types"] = json!(["medical_record"]);
        let err = Catalog::parse(&file.to_string()).unwrap_err();
        assert_eq!(err.entry, "purpose:business_registration");
    }

    #[test]
    fn fields_are_validated_against_their_type() {
        let c = Catalog::parse(BUILTIN).unwrap();
        let t = c.document_type("degree_certificate").unwrap();
        let ok = json!({ "holder_name": "张伟", "degree": "master", "major": "法学",
            "institution": "北京大学", "certificate_number": "1000142019001234", "conferred_on": "2019-07-01" });
        assert_eq!(c.validate_fields(t, &ok).unwrap()["degree"], "master");
        for (field, bad) in [
            ("degree", json!("emperor")),
            ("conferred_on", json!("2019-13-01")),
            ("certificate_number", json!("12")),
            ("holder_name", json!(42)),
            ("nickname", json!("x")),
        ] {
            let mut v = ok.clone();
            v[field] = bad;
            assert!(c.validate_fields(t, &v).is_err(), "{field}");
        }
        let mut missing = ok.clone();
        missing.as_object_mut().unwrap().remove("major");
        assert!(c.validate_fields(t, &missing).is_err());
        assert!(c.validate_fields(t, &json!([1])).is_err());
    }
}
