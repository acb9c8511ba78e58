//! Personal data that only a key makes recognisable: dates of birth, street
//! addresses, postal codes, gender, passport numbers and personal names (Latin
//! script; Korean names are in `korea`). Without a matching key none of these
//! is reported: a date, a number or two capitalised words mean nothing alone.

use super::keys::Hint;
use super::value::{is_placeholder_value, parse_date, valid_date};
use super::{Cand, DataType, Val};

pub(super) fn detect(v: &Val, hint: Hint, c: &mut Cand) {
    if is_placeholder_value(v.s) {
        return;
    }
    match hint {
        Hint::Dob if is_birth_date(v) => c.offer(DataType::DateOfBirth, 92),
        Hint::Address if is_address(v) => c.offer(DataType::StreetAddress, 88),
        Hint::Postal if is_postal(v.s) => c.offer(DataType::PostalCode, 88),
        Hint::Gender if is_gender(v.s) => c.offer(DataType::Gender, 88),
        Hint::Passport if is_passport(v.s) => c.offer(DataType::PassportNumber, 90),
        Hint::PersonName if is_latin_name(v.s, false) => c.offer(DataType::PersonName, 90),
        Hint::NameGeneric if is_latin_name(v.s, true) => c.offer(DataType::PersonName, 55),
        _ => {}
    }
}

fn is_birth_date(v: &Val) -> bool {
    let s = v.s;
    // ISO date-time at midnight, as many APIs send dates.
    let date = match s.as_bytes().get(10) {
        Some(b'T' | b' ') if s.len() <= 30 => s.get(..10).unwrap_or(s),
        _ => s,
    };
    if let Some(y) = parse_date(date) {
        return (1900..=2030).contains(&y);
    }
    // YYMMDD, as Korean forms ask for 생년월일.
    if v.all_digits && s.len() == 6 {
        let d = v.digits().unwrap_or_default();
        let n = |i: usize| u32::from(d.get(i).copied().unwrap_or(0));
        return valid_date(2000 + n(0) * 10 + n(1), n(2) * 10 + n(3), n(4) * 10 + n(5));
    }
    false
}

fn is_hangul(c: char) -> bool {
    ('\u{AC00}'..='\u{D7A3}').contains(&c)
}

/// Words and a house number, or a Korean address (시/도/구/군/로/길/동 ...).
fn is_address(v: &Val) -> bool {
    let s = v.s;
    if !(8..=300).contains(&s.len()) || s.contains("://") || s.contains('@') {
        return false;
    }
    let letters = s.chars().filter(|c| c.is_alphabetic()).count();
    if letters < 3 {
        return false;
    }
    if s.chars().any(is_hangul) {
        const MARKERS: &[&str] = &["시", "도", "구", "군", "로", "길", "동", "읍", "면", "리"];
        return v.has_space && MARKERS.iter().any(|m| s.contains(m));
    }
    let words = s.split_whitespace().count();
    v.has_space && v.ndigits >= 1 && words >= 3
}

/// US ZIP (+4), Korean/German/French 5 digits, UK, Canadian, Japanese, 6-digit.
fn is_postal(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    let alpha = |i: usize| b.get(i).is_some_and(u8::is_ascii_alphabetic);
    let num = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    match b.len() {
        5 | 6 if digits(0..b.len()) => true,
        10 if digits(0..5) && b.get(5) == Some(&b'-') && digits(6..10) => true,
        8 if digits(0..3) && b.get(3) == Some(&b'-') && digits(4..8) => true,
        // Canada: A1A 1A1
        7 if alpha(0)
            && num(1)
            && alpha(2)
            && b.get(3) == Some(&b' ')
            && num(4)
            && alpha(5)
            && num(6) =>
        {
            true
        }
        // UK: outward (2-4) space inward (digit letter letter)
        6..=8 => {
            let Some((out, inw)) = s.split_once(' ') else {
                return false;
            };
            let (o, i) = (out.as_bytes(), inw.as_bytes());
            (2..=4).contains(&o.len())
                && o.first().is_some_and(u8::is_ascii_alphabetic)
                && o.iter().all(u8::is_ascii_alphanumeric)
                && o.iter().any(u8::is_ascii_digit)
                && i.len() == 3
                && i.first().is_some_and(u8::is_ascii_digit)
                && i.iter().skip(1).all(u8::is_ascii_alphabetic)
        }
        _ => false,
    }
}

fn is_gender(s: &str) -> bool {
    const VALUES: &[&str] = &[
        "m",
        "f",
        "male",
        "female",
        "man",
        "woman",
        "other",
        "nonbinary",
        "non-binary",
        "x",
        "남",
        "여",
        "남자",
        "여자",
        "남성",
        "여성",
        "unknown_gender",
    ];
    VALUES.iter().any(|g| s.eq_ignore_ascii_case(g))
}

/// 6-9 letters and digits with at least four digits (US, UK, DE, FR, IN ...).
fn is_passport(s: &str) -> bool {
    let b = s.as_bytes();
    (6..=9).contains(&b.len())
        && b.iter().all(u8::is_ascii_alphanumeric)
        && b.iter().filter(|c| c.is_ascii_digit()).count() >= 4
}

/// One to four words of letters (apostrophes, hyphens, periods inside names);
/// `strict` wants two or three capitalised words.
fn is_latin_name(s: &str, strict: bool) -> bool {
    if !(2..=60).contains(&s.len()) || s.chars().any(is_hangul) {
        return false;
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    let range = if strict { 2..=3 } else { 1..=4 };
    range.contains(&words.len())
        && words.iter().all(|w| {
            w.chars().next().is_some_and(char::is_alphabetic)
                && w.chars()
                    .all(|c| c.is_alphabetic() || matches!(c, '\'' | '-' | '.'))
                && (!strict || w.chars().next().is_some_and(char::is_uppercase))
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{is, not};
    use super::*;

    #[test]
    fn dob() {
        is("dob", "1987-06-15", DataType::DateOfBirth);
        is("birthDate", "15/06/1987", DataType::DateOfBirth);
        is("생년월일", "870615", DataType::DateOfBirth);
        is(
            "date_of_birth",
            "1987-06-15T00:00:00Z",
            DataType::DateOfBirth,
        );
        not("created_at", "1987-06-15");
        not("dob", "1987-13-15");
        not("", "1987-06-15");
    }

    #[test]
    fn address() {
        is(
            "street_address",
            "1600 Amphitheatre Parkway, Mountain View",
            DataType::StreetAddress,
        );
        is(
            "주소",
            "서울특별시 강남구 테헤란로 152",
            DataType::StreetAddress,
        );
        is(
            "shipping_address",
            "221B Baker Street, London",
            DataType::StreetAddress,
        );
        not("email_address", "1600 Amphitheatre Parkway, Mountain View");
        not(
            "wallet_address",
            "0x52908400098527886E0F7030069857D2E4169EE7",
        );
        not("address", "N/A");
        not("description", "1600 Amphitheatre Parkway, Mountain View");
    }

    #[test]
    fn postal_gender_passport_names() {
        is("zip", "94043", DataType::PostalCode);
        is("postal_code", "SW1A 1AA", DataType::PostalCode);
        is("postcode", "K1A 0B1", DataType::PostalCode);
        not("zip", "9404");
        not("", "94043");
        is("gender", "female", DataType::Gender);
        is("성별", "남", DataType::Gender);
        not("gender", "purple");
        not("type", "female");
        is("passport_number", "123456789", DataType::PassportNumber);
        is("passportNo", "C01X00T47", DataType::PassportNumber);
        not("passport_number", "ABCDEFGH");
        not("", "C01X00T47");
        is("first_name", "Jane", DataType::PersonName);
        is("fullName", "María-José O'Neil", DataType::PersonName);
        not("name", "Widget Pro");
        not("first_name", "R2D2");
        not("product_name", "Jane");
    }
}
