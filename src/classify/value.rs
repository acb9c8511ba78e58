//! A value prepared once for every family's checks (character classes, its
//! digits without separators), and small shared helpers: percent-decoding,
//! UUID and date recognition.

use std::borrow::Cow;

/// Most digits kept from a value; longer digit strings are no number we check.
pub const MAX_DIGITS: usize = 24;

/// One trimmed value and what all validators want to know about it.
pub struct Val<'a> {
    pub s: &'a str,
    /// The value's ASCII digits in order, without separators (first `MAX_DIGITS`).
    digits: [u8; MAX_DIGITS],
    /// Number of ASCII digits in the value (may exceed `MAX_DIGITS`).
    pub ndigits: usize,
    /// Only ASCII digits.
    pub all_digits: bool,
    /// Only digits and the separators ` -.()/+`.
    pub numeric_like: bool,
    pub has_upper: bool,
    pub has_lower: bool,
    pub has_space: bool,
    pub ascii: bool,
}

impl<'a> Val<'a> {
    pub fn new(s: &'a str) -> Val<'a> {
        let mut v = Val {
            s,
            digits: [0; MAX_DIGITS],
            ndigits: 0,
            all_digits: !s.is_empty(),
            numeric_like: !s.is_empty(),
            has_upper: false,
            has_lower: false,
            has_space: false,
            ascii: s.is_ascii(),
        };
        for b in s.bytes() {
            match b {
                b'0'..=b'9' => {
                    if let Some(d) = v.digits.get_mut(v.ndigits) {
                        *d = b - b'0';
                    }
                    v.ndigits += 1;
                }
                b' ' | b'-' | b'.' | b'(' | b')' | b'/' | b'+' => {
                    v.all_digits = false;
                    v.has_space |= b == b' ';
                }
                _ => {
                    v.all_digits = false;
                    v.numeric_like = false;
                    v.has_upper |= b.is_ascii_uppercase();
                    v.has_lower |= b.is_ascii_lowercase();
                    v.has_space |= b.is_ascii_whitespace();
                }
            }
        }
        v
    }

    /// The digits (0-9 values, not ASCII) when there are at most `MAX_DIGITS`.
    pub fn digits(&self) -> Option<&[u8]> {
        self.digits.get(..self.ndigits)
    }

    pub fn len(&self) -> usize {
        self.s.len()
    }

    pub fn is_empty(&self) -> bool {
        self.s.is_empty()
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }
}

/// `8-4-4-4-12` hex digits.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Digits all the same ("0000000000"): placeholders, never data.
pub fn repeated(d: &[u8]) -> bool {
    d.windows(2).all(|w| w.first() == w.get(1))
}

/// Number from a digit slice (values 0-9); saturates on overflow.
pub fn num(d: &[u8]) -> u32 {
    d.iter().fold(0u32, |n, &x| {
        n.saturating_mul(10).saturating_add(u32::from(x))
    })
}

/// Luhn check over digit values.
pub fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut x = u32::from(x);
        if i % 2 == 1 {
            x *= 2;
            if x > 9 {
                x -= 9;
            }
        }
        sum += x;
    }
    !d.is_empty() && sum % 10 == 0
}

pub fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

pub fn valid_date(year: u32, month: u32, day: u32) -> bool {
    (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month)
}

/// A calendar date as `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD`, `DD/MM/YYYY`,
/// `MM/DD/YYYY`, `DD.MM.YYYY` or `YYYYMMDD`; returns the year.
pub fn parse_date(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    let all_digits = |x: &[u8]| !x.is_empty() && x.iter().all(u8::is_ascii_digit);
    let n = |x: &[u8]| {
        x.iter()
            .fold(0u32, |n, &c| n * 10 + u32::from(c.wrapping_sub(b'0')))
    };
    if b.len() == 8 && all_digits(b) {
        let (y, m, d) = (n(b.get(0..4)?), n(b.get(4..6)?), n(b.get(6..8)?));
        return valid_date(y, m, d).then_some(y);
    }
    if b.len() != 10 {
        return None;
    }
    let sep2 = b
        .get(2)
        .copied()
        .filter(|c| matches!(c, b'/' | b'.' | b'-'));
    if let Some(_sep) = sep2.filter(|&s| b.get(5) == Some(&s)) {
        // DD/MM/YYYY or MM/DD/YYYY
        let (a, c, y) = (b.get(0..2)?, b.get(3..5)?, b.get(6..10)?);
        if !(all_digits(a) && all_digits(c) && all_digits(y)) {
            return None;
        }
        let (a, c, y) = (n(a), n(c), n(y));
        return (valid_date(y, c, a) || valid_date(y, a, c)).then_some(y);
    }
    None.or_else(|| {
        let sep = *b.get(4).filter(|c| matches!(c, b'/' | b'.' | b'-'))?;
        if b.get(7) != Some(&sep) {
            return None;
        }
        let (y, m, d) = (b.get(0..4)?, b.get(5..7)?, b.get(8..10)?);
        if !(all_digits(y) && all_digits(m) && all_digits(d)) {
            return None;
        }
        let y = n(y);
        valid_date(y, n(m), n(d)).then_some(y)
    })
}

/// Percent-decoding (and `+` as space when `plus`), lossy for invalid UTF-8.
/// Borrows when there is nothing to decode.
pub fn percent_decode(s: &str, plus: bool) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || (plus && b == b'+')) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                    }
                    None => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Token-like: 16+ characters of a token alphabet, no spaces, two character
/// classes or 32+ hex digits, not one repeated character. Used for opaque
/// secrets under credential keys.
pub fn token_like(s: &str) -> bool {
    let b = s.as_bytes();
    if !(16..=4096).contains(&b.len()) {
        return false;
    }
    let (mut up, mut low, mut dig, mut hex) = (false, false, false, true);
    for &c in b {
        match c {
            b'A'..=b'Z' => up = true,
            b'a'..=b'z' => low = true,
            b'0'..=b'9' => dig = true,
            b'_' | b'-' | b'.' | b'~' | b'+' | b'/' | b'=' | b':' | b'%' | b'!' | b'*' | b'$' => {}
            _ => return false,
        }
        hex &= c.is_ascii_hexdigit();
    }
    let classes = u8::from(up) + u8::from(low) + u8::from(dig);
    let distinct = {
        let mut seen = [false; 128];
        let mut n = 0;
        for &c in b {
            if let Some(x) = seen.get_mut(usize::from(c)) {
                if !*x {
                    *x = true;
                    n += 1;
                }
            }
        }
        n
    };
    distinct >= 8 && (classes >= 2 || (hex && b.len() >= 32))
}

/// Values that stand for "no value": never sensitive.
pub fn is_placeholder_value(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "null",
        "nil",
        "none",
        "undefined",
        "true",
        "false",
        "n/a",
        "na",
        "redacted",
        "[redacted]",
        "<redacted>",
        "masked",
        "hidden",
        "empty",
        "string",
        "xxx",
        "todo",
        "tbd",
        "-",
    ];
    let lower_is = |w: &&str| s.eq_ignore_ascii_case(w);
    if WORDS.iter().any(lower_is) {
        return true;
    }
    let b = s.as_bytes();
    // Masked (`********`, `xxxx`), templated (`${TOKEN}`, `{{ secret }}`, `<your-key>`).
    b.iter()
        .all(|&c| c == b'*' || c == b'x' || c == b'X' || c == b'.' || c == b'#')
        || (s.starts_with("${") && s.ends_with('}'))
        || (s.starts_with("{{") && s.ends_with("}}"))
        || (s.starts_with('<') && s.ends_with('>'))
        || s.starts_with("[REDACTED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn val_collects_digits_and_classes() {
        let v = Val::new("4111-1111 1111.1111");
        assert_eq!(v.ndigits, 16);
        assert!(v.numeric_like && !v.all_digits);
        assert_eq!(v.digits().unwrap().first(), Some(&4));
        let v = Val::new("abc123");
        assert!(!v.numeric_like && v.has_lower && !v.has_upper);
    }

    #[test]
    fn dates_and_helpers() {
        assert_eq!(parse_date("1990-02-28"), Some(1990));
        assert_eq!(parse_date("19900230"), None);
        assert_eq!(parse_date("31/12/1985"), Some(1985));
        assert_eq!(parse_date("12/31/1985"), Some(1985));
        assert_eq!(parse_date("2000/02/29"), Some(2000));
        assert_eq!(parse_date("1900-02-29"), None);
        assert!(luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert_eq!(percent_decode("a%40b.com+x", true), "a@b.com x");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert!(token_like("a8F3kLm0Qz7Rt2Wx"));
        assert!(!token_like("aaaaaaaaaaaaaaaaaaaa"));
        assert!(!token_like("hello world and more"));
        assert!(
            is_placeholder_value("********")
                && is_placeholder_value("${API_KEY}")
                && !is_placeholder_value("hunter22")
        );
    }
}
