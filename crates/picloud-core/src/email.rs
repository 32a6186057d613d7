//! Users' email addresses: the one form PiCloud stores, and the look-alike rules.
//!
//! An address is a login name and the name admins read in member lists, so two
//! addresses that look the same must not both exist. Besides the syntax, each part
//! (the local part, and every label of the domain, punycode decoded) must pass Unicode
//! Technical Standard #39:
//! - every non-ASCII character is allowed in identifiers (General Security Profile):
//!   no invisible or formatting characters, no fullwidth or compatibility forms;
//! - the part is *highly restrictive* (§5.2): one script, or Latin with the scripts
//!   that are written together with it (Han with Hiragana and Katakana, Bopomofo or
//!   Hangul) — a Cyrillic 'а' among Latin letters is refused;
//! - a non-ASCII part is not a mere look-alike of an ASCII string (its confusable
//!   skeleton is not ASCII) — an all-Cyrillic "сосо" that reads "coco" is refused.
//!
//! Honest international addresses (`josé@…`, `иван@…`, `user@пример.com`) pass.

use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// Longest address (RFC 5321's path limit less the angle brackets).
const MAX_LEN: usize = 254;
/// Longest local part (RFC 5321).
const MAX_LOCAL_LEN: usize = 64;
const ACE_PREFIX: &str = "xn--";

/// Which part of an address a rule found at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Local,
    Domain,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Local => "the part before the @",
            Part::Domain => "the domain",
        })
    }
}

/// Why an address is refused; `Display` is the message users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("not a valid email address")]
    Syntax,
    #[error(
        "{part} contains U+{:04X}, a character not allowed in addresses \
         (invisible, formatting and look-alike forms are refused)",
        u32::from(*.ch)
    )]
    Character { part: Part, ch: char },
    #[error(
        "{part} mixes letters of different scripts (such as a Cyrillic 'а' among Latin \
         letters), which makes it look like another address"
    )]
    MixedScripts { part: Part },
    #[error(
        "{part} is made of look-alikes of ASCII letters (such as a dotless 'ı' for 'i'), \
         so it reads as another address; write it in ASCII"
    )]
    LooksLikeAscii { part: Part },
    #[error("the domain label {label:?} is not valid punycode")]
    Punycode { label: String },
}

/// The stored form of an address (trimmed, lower-cased, NFC), or why it is refused.
/// The one form an address is stored and looked up in, without judging it: trimmed,
/// lower-cased and NFC, so that a composed and a decomposed "é" are one address.
pub fn canonical(input: &str) -> String {
    input.trim().to_lowercase().nfc().collect()
}

pub fn normalize(input: &str) -> Result<String, EmailError> {
    let email = canonical(input);
    if email.len() > MAX_LEN || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EmailError::Syntax);
    }
    let (local, domain) = email.split_once('@').ok_or(EmailError::Syntax)?;
    if local.is_empty() || local.len() > MAX_LOCAL_LEN || domain.contains('@') {
        return Err(EmailError::Syntax);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| !valid_label(l)) {
        return Err(EmailError::Syntax);
    }
    check_part(Part::Local, local)?;
    for label in labels {
        match label.strip_prefix(ACE_PREFIX) {
            // Punycode hides what a label shows: judge what it decodes to.
            Some(encoded) => {
                let decoded = idna::punycode::decode_to_string(encoded)
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| EmailError::Punycode {
                        label: label.to_owned(),
                    })?;
                check_part(Part::Domain, &decoded)?;
            }
            None => check_part(Part::Domain, label)?,
        }
    }
    Ok(email)
}

/// A domain label: letters and digits of any script, and inner hyphens.
fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c == '-' || c.is_ascii_alphanumeric() || !c.is_ascii())
}

fn check_part(part: Part, text: &str) -> Result<(), EmailError> {
    if text.is_ascii() {
        return Ok(());
    }
    if let Some(ch) = text
        .chars()
        .find(|c| !c.is_ascii() && !c.identifier_allowed())
    {
        return Err(EmailError::Character { part, ch });
    }
    // ASCII punctuation (`.`, `+`, `-`, `_`, …) belongs to every script and is outside
    // the identifier profile, so it plays no part in the script test.
    let letters: String = text.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    if !letters
        .as_str()
        .check_restriction_level(RestrictionLevel::HighlyRestrictive)
    {
        return Err(EmailError::MixedScripts { part });
    }
    if unicode_security::skeleton(text).all(|c| c.is_ascii()) {
        return Err(EmailError::LooksLikeAscii { part });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_one_form() {
        assert_eq!(
            normalize("  Ada@Example.COM ").as_deref(),
            Ok("ada@example.com")
        );
        assert_eq!(
            normalize("jose\u{301}@example.com").as_deref(),
            Ok("jos\u{e9}@example.com")
        );
    }

    #[test]
    fn syntax() {
        for bad in [
            "",
            "@example.com",
            "a@",
            "a@localhost",
            "a@b@example.com",
            "a b@example.com",
            "a@.example.com",
            "a@example..com",
            "a@-x.com",
            "a@x_y.com",
            "a\u{7}@example.com",
        ] {
            assert_eq!(normalize(bad), Err(EmailError::Syntax), "{bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(normalize(&long_local), Err(EmailError::Syntax));
    }

    #[test]
    fn look_alikes_are_refused() {
        type Expect = fn(&EmailError) -> bool;
        let cases: [(&str, Expect); 9] = [
            ("\u{430}dmin@example.com", |e| {
                matches!(e, EmailError::MixedScripts { part: Part::Local })
            }),
            ("admin@ex\u{430}mple.com", |e| {
                matches!(e, EmailError::MixedScripts { part: Part::Domain })
            }),
            ("admin@xn--exmple-4nf.com", |e| {
                matches!(e, EmailError::MixedScripts { part: Part::Domain })
            }),
            ("p\u{3bf}stmaster@example.com", |e| {
                matches!(e, EmailError::MixedScripts { .. })
            }),
            ("ad\u{200b}min@example.com", |e| {
                matches!(e, EmailError::Character { ch: '\u{200b}', .. })
            }),
            ("\u{ff41}dmin@example.com", |e| {
                matches!(e, EmailError::Character { .. })
            }),
            ("adm\u{131}n@example.com", |e| {
                matches!(e, EmailError::LooksLikeAscii { part: Part::Local })
            }),
            ("a@xn--n1aahb.com", |e| {
                matches!(
                    e,
                    EmailError::LooksLikeAscii {
                        part: Part::Domain,
                        ..
                    }
                )
            }),
            ("a@xn--zz-invalid-.com", |e| {
                matches!(e, EmailError::Syntax | EmailError::Punycode { .. })
            }),
        ];
        for (bad, expected) in cases {
            let got = normalize(bad);
            assert!(
                got.as_ref().is_err_and(expected),
                "{bad:?} answered {got:?}"
            );
        }
    }

    #[test]
    fn honest_international_addresses_pass() {
        for good in [
            "jos\u{e9}@example.com",
            "m\u{fc}ller@example.de",
            "\u{438}\u{432}\u{430}\u{43d}@example.com",
            "user@\u{43f}\u{440}\u{438}\u{43c}\u{435}\u{440}.com",
            "user@xn--e1afmkfd.com",
            "\u{7530}\u{4e2d}taro@example.jp",
            "\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}",
            "first.last+tag@sub.example.com",
            "o'brien@example.ie",
        ] {
            assert!(normalize(good).is_ok(), "{good:?}: {:?}", normalize(good));
        }
    }
}
