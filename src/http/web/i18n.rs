//! The UI languages: their message catalogs (`web/i18n/*.json`), choosing one per request,
//! and the labels of document types and fields in each.

use super::*;

/// One language's messages, by key.
pub(super) type Messages = BTreeMap<String, String>;

static CATALOGS: LazyLock<[(Lang, Messages); 2]> = LazyLock::new(|| {
    let parse = |text: &str| serde_json::from_str::<Messages>(text).unwrap_or_default();
    [
        (Lang::En, parse(include_str!("../../../web/i18n/en.json"))),
        (
            Lang::ZhCn,
            parse(include_str!("../../../web/i18n/zh-CN.json")),
        ),
    ]
});

/// A UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    ZhCn,
}

impl Lang {
    pub(super) fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::ZhCn => "zh-CN",
        }
    }

    pub(super) fn parse(tag: &str) -> Option<Self> {
        let tag = tag.trim().to_ascii_lowercase();
        if tag.starts_with("zh") {
            Some(Self::ZhCn)
        } else if tag.starts_with("en") {
            Some(Self::En)
        } else {
            None
        }
    }

    pub(super) fn other(self) -> Self {
        match self {
            Self::En => Self::ZhCn,
            Self::ZhCn => Self::En,
        }
    }

    pub(super) fn messages(self) -> &'static Messages {
        let catalogs: &'static [(Lang, Messages); 2] = &CATALOGS;
        catalogs
            .iter()
            .find(|(l, _)| *l == self)
            .map(|(_, c)| c)
            .unwrap_or(&catalogs[0].1)
    }
}

#[derive(Deserialize)]
pub(super) struct LangQuery {
    lang: Option<String>,
}

/// The language of this request: `?lang=`, then the language cookie, then
/// `Accept-Language` (first supported tag), then English.
pub(super) fn choose_lang(query: &LangQuery, headers: &HeaderMap) -> (Lang, bool) {
    if let Some(l) = query.lang.as_deref().and_then(Lang::parse) {
        return (l, true);
    }
    if let Some(l) = read_cookie(headers, LANG).and_then(Lang::parse) {
        return (l, false);
    }
    let accepted = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let lang = accepted
        .split(',')
        .filter_map(|part| Lang::parse(part.split(';').next().unwrap_or("")))
        .next()
        .unwrap_or(Lang::En);
    (lang, false)
}

pub(super) fn type_name(lang: Lang, t: &crate::catalog::DocumentType) -> String {
    names_in(lang, &t.names)
}

pub(super) fn names_in(lang: Lang, names: &crate::catalog::Names) -> String {
    match lang {
        Lang::En => names.en.clone(),
        Lang::ZhCn => names.zh_cn.clone(),
    }
}

/// A field's label in the page's language (`field_<name>` in `web/i18n`); a field without
/// one reads `business_scope` → `Business scope`.
pub(super) fn field_label(lang: Lang, name: &str) -> String {
    if let Some(label) = lang.messages().get(&format!("field_{name}")) {
        return label.clone();
    }
    let spaced = name.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => spaced,
    }
}

/// Field names as a readable list of labels.
pub(super) fn labels(lang: Lang, fields: &[String]) -> String {
    let labels: Vec<String> = fields.iter().map(|f| field_label(lang, f)).collect();
    labels.join(list_separator(lang))
}

/// How a list is joined in running text: `, ` in English, `、` in Chinese.
pub(super) fn list_separator(lang: Lang) -> &'static str {
    lang.messages()
        .get("list_separator")
        .map_or(", ", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn both_languages_have_every_text_and_every_field_label() {
        let en: Vec<&String> = Lang::En.messages().keys().collect();
        let zh: Vec<&String> = Lang::ZhCn.messages().keys().collect();
        assert_eq!(en, zh, "en.json and zh-CN.json hold the same keys");
        let Ok(catalog) = crate::catalog::Catalog::load(None) else {
            panic!("the built-in catalog loads");
        };
        for t in catalog.document_types() {
            for f in &t.fields {
                let key = format!("field_{}", f.name);
                for lang in [Lang::En, Lang::ZhCn] {
                    assert!(
                        lang.messages().contains_key(&key),
                        "{} has no label for {}",
                        lang.tag(),
                        f.name
                    );
                }
            }
        }
    }
}
