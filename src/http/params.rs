//! Rules of parameters and bodies that several routes share, as the server applies them
//! and as the OpenAPI document states them.

use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};

use super::error::ApiError;
use crate::error::invalid;

/// An RFC 3339 time, or empty for no bound (what a form sends for a blank field).
pub fn time_or_empty() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(0)),
        )
        .into()
}

/// Reads an RFC 3339 time as milliseconds; empty is no bound.
pub fn time(field: &'static str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| crate::error::rfc3339_time(field, t).map(crate::clock::to_ms))
        .transpose()
        .map_err(ApiError::from)
}

/// A trail outcome filter: `ok`, `refused`, `failed`, or empty for any.
pub fn outcome(text: Option<&str>) -> Result<Option<String>, ApiError> {
    match text {
        None | Some("") => Ok(None),
        Some(o @ ("ok" | "refused" | "failed")) => Ok(Some(o.to_owned())),
        Some(_) => Err(invalid("outcome", "must be ok, refused or failed").into()),
    }
}

/// Unpadded base64url that decodes exactly (no stray trailing bits), as the passkey
/// library reads its binary fields.
const BASE64URL: &str =
    "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$";

fn base64url(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(BASE64URL))
        .description(Some(description))
}

fn credential(response: ObjectBuilder, what: &str) -> Schema {
    ObjectBuilder::new()
        .description(Some(what))
        .property("id", ObjectBuilder::new().schema_type(Type::String))
        .required("id")
        .property("rawId", base64url("The credential id"))
        .required("rawId")
        .property("type", ObjectBuilder::new().schema_type(Type::String))
        .required("type")
        .property("response", response)
        .required("response")
        .property(
            "clientExtensionResults",
            ObjectBuilder::new().schema_type(Type::Object),
        )
        .into()
}

/// A passkey's answer to a registration challenge, as `navigator.credentials.create()`
/// gives it (binary fields in base64url).
pub fn registration_credential() -> Schema {
    credential(
        ObjectBuilder::new()
            .property("attestationObject", base64url("CBOR attestation"))
            .required("attestationObject")
            .property("clientDataJSON", base64url("The client data"))
            .required("clientDataJSON")
            .property(
                "transports",
                utoipa::openapi::schema::ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String)),
            ),
        "The PublicKeyCredential of a registration (WebAuthn), binary fields in base64url",
    )
}

/// A passkey's answer to an authentication challenge, as `navigator.credentials.get()`
/// gives it (binary fields in base64url).
pub fn assertion_credential() -> Schema {
    credential(
        ObjectBuilder::new()
            .property("authenticatorData", base64url("The authenticator data"))
            .required("authenticatorData")
            .property("clientDataJSON", base64url("The client data"))
            .required("clientDataJSON")
            .property("signature", base64url("The signature"))
            .required("signature")
            .property(
                "userHandle",
                ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                        Type::String,
                        Type::Null,
                    ]))
                    .pattern(Some(BASE64URL)),
            ),
        "The PublicKeyCredential of an authentication (WebAuthn), binary fields in base64url",
    )
}
