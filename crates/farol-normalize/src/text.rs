//! Accent- and case-insensitive text for search.
//!
//! [`fold`] lower-cases and strips diacritics; [`search_tokens`] splits folded
//! text into `[a-z0-9]+` tokens. The search column is built with
//! [`search_text`] and queries are tokenized with [`search_tokens`], so SQLite
//! FTS5 and PostgreSQL `tsvector` see exactly the same tokens (configure both
//! with a plain whitespace/ASCII tokenizer and no stemming).
//!
//! # Why a table and not Unicode normalization
//!
//! Folding uses a small hand-written table covering Latin-1 Supplement and
//! Latin Extended-A (`á à â ã ä é ê í ó ô õ ú ü ç ñ ß æ œ ø ł …`, both cases,
//! plus the ordinal indicators `ª` `º`), and drops combining diacritical marks
//! (U+0300–U+036F) so text in decomposed form (NFD, as produced by macOS) folds
//! the same as precomposed text. That covers Portuguese, Spanish, French,
//! German, Italian and the other languages Farol's users type, with no
//! dependency and no allocation beyond the output. Letters outside those blocks
//! (Vietnamese `ạ`, Greek, Cyrillic, …) are only lower-cased by [`fold`], and
//! are therefore separators for [`search_tokens`].

/// Lower-cases `s` and strips diacritics from Latin letters.
///
/// `"São Paulo – AÇÚCAR"` → `"sao paulo – acucar"`. Characters other than
/// letters are kept as they are. Every character of the output is unchanged by
/// lower-casing, and `fold(fold(s)) == fold(s)`.
pub fn fold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if !is_combining_mark(c) {
            for lower in c.to_lowercase() {
                match fold_lower(lower) {
                    Some(replacement) => out.push_str(replacement),
                    None if is_combining_mark(lower) => {}
                    None => out.push(lower),
                }
            }
        }
    }
    out
}

/// Splits `s` into search tokens: [`fold`], then split on every character
/// that is not `a-z` or `0-9`, dropping empty pieces.
///
/// `"Padaria Pão-de-Açúcar, loja 2"` → `["padaria", "pao", "de", "acucar",
/// "loja", "2"]`.
pub fn search_tokens(s: &str) -> Vec<String> {
    let folded = fold(s);
    folded
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The [`search_tokens`] of `s` joined by single spaces: the value to store in
/// a search column (`"Pão de Açúcar"` → `"pao de acucar"`).
pub fn search_text(s: &str) -> String {
    search_tokens(s).join(" ")
}

/// Combining diacritical marks (U+0300–U+036F).
fn is_combining_mark(c: char) -> bool {
    ('\u{0300}'..='\u{036F}').contains(&c)
}

/// The ASCII replacement of a lower-case letter with a diacritic (or a
/// ligature), for Latin-1 Supplement and Latin Extended-A.
fn fold_lower(c: char) -> Option<&'static str> {
    let replacement = match c {
        'ª' | 'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ð' | 'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' | 'ĸ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' | 'ŋ' => "n",
        'º' | 'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ſ' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    };
    Some(replacement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folds_portuguese() {
        assert_eq!(fold("São Paulo"), "sao paulo");
        assert_eq!(fold("AÇÚCAR"), "acucar");
        assert_eq!(fold("ação, coração, pão, irmã"), "acao, coracao, pao, irma");
        assert_eq!(fold("Conceição do Araguaia"), "conceicao do araguaia");
        assert_eq!(fold("Gonçalves Dias"), "goncalves dias");
        assert_eq!(
            fold("Ônibus Âncora Êxito Índio Úmido"),
            "onibus ancora exito indio umido"
        );
        assert_eq!(fold("lingüiça à toa"), "linguica a toa");
        assert_eq!(
            fold("Rua 1º de Março, nº 10, 2ª"),
            "rua 1o de marco, no 10, 2a"
        );
    }

    #[test]
    fn folds_latin1_both_cases() {
        let upper = "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞ";
        let lower = "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþ";
        let expected = "aaaaaaaeceeeeiiiidnoooooouuuuyth";
        assert_eq!(fold(upper), expected);
        assert_eq!(fold(lower), expected);
        assert_eq!(fold("ßÿ"), "ssy");
        assert_eq!(fold("Œuvre Łódź Ñandú Ærø"), "oeuvre lodz nandu aero");
    }

    #[test]
    fn folds_decomposed_text() {
        // "São" and "Ação" in NFD: base letter + combining mark.
        assert_eq!(fold("Sa\u{0303}o"), "sao");
        assert_eq!(fold("Ac\u{0327}a\u{0303}o"), "acao");
        assert_eq!(fold("İstanbul"), "istanbul");
    }

    #[test]
    fn keeps_other_characters() {
        assert_eq!(fold("R$ 1.234,56 – ok!"), "r$ 1.234,56 – ok!");
        assert_eq!(fold("ΑΘΗΝΑ"), "αθηνα");
        assert_eq!(fold(""), "");
    }

    #[test]
    fn tokens() {
        assert_eq!(
            search_tokens("Padaria Pão-de-Açúcar, loja 2"),
            ["padaria", "pao", "de", "acucar", "loja", "2"]
        );
        assert_eq!(
            search_tokens("  JOSÉ   da SILVA  "),
            ["jose", "da", "silva"]
        );
        assert_eq!(
            search_tokens("ana.souza@example.com"),
            ["ana", "souza", "example", "com"]
        );
        assert_eq!(search_tokens("(11) 98765-4321"), ["11", "98765", "4321"]);
        assert_eq!(search_tokens("Straße"), ["strasse"]);
        assert_eq!(search_tokens("Αθήνα café"), ["cafe"]);
        assert!(search_tokens("").is_empty());
        assert!(search_tokens(" -–/ ").is_empty());
        assert_eq!(search_text("Pão de  Açúcar!"), "pao de acucar");
        // Query and document tokenize identically regardless of accents/case.
        assert_eq!(search_tokens("SAO JOAO"), search_tokens("São João"));
    }

    proptest! {
        #[test]
        fn fold_output_is_lower_case(s in any::<String>()) {
            let folded = fold(&s);
            for c in folded.chars() {
                prop_assert!(c.to_lowercase().eq([c]), "{c:?} in {folded:?}");
                prop_assert!(!c.is_ascii_uppercase());
            }
            prop_assert_eq!(fold(&folded), folded);
        }

        #[test]
        fn fold_removes_latin_diacritics(s in "[a-zA-ZÀ-ÖØ-öø-ſ ]{0,40}") {
            let folded = fold(&s);
            prop_assert!(folded.bytes().all(|b| b.is_ascii_lowercase() || b == b' '), "{folded:?}");
        }

        #[test]
        fn tokens_are_ascii_alphanumeric(s in any::<String>()) {
            for token in search_tokens(&s) {
                prop_assert!(!token.is_empty());
                prop_assert!(token.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{token:?}");
            }
            prop_assert_eq!(search_tokens(&search_text(&s)), search_tokens(&s));
        }
    }
}
