//! Financial data: payment cards (Luhn and issuer ranges), IBANs (per-country
//! length and mod 97), US routing numbers (ABA checksum), bank accounts, card
//! security codes and expiry dates under their keys, and US social security
//! numbers (SSA area/group/serial rules).

use super::keys::Hint;
use super::value::{luhn, num, repeated};
use super::{Cand, DataType, Val};

pub(super) fn detect(v: &Val, hint: Hint, c: &mut Cand) {
    if v.numeric_like {
        let Some(d) = v.digits() else { return };
        if repeated(d) {
            return;
        }
        if (12..=19).contains(&d.len()) && card_chars(v.s) {
            card(d, hint, c);
        }
        if d.len() == 9 {
            ssn(v, d, hint, c);
            if hint == Hint::Routing && v.all_digits && routing_valid(d) {
                c.offer(DataType::UsRoutingNumber, 95);
            }
        }
        match hint {
            Hint::Account if (6..=20).contains(&d.len()) && account_chars(v.s) => {
                c.offer(DataType::BankAccount, 90)
            }
            Hint::Cvv if v.all_digits && (3..=4).contains(&d.len()) => {
                c.offer(DataType::CardCvv, 92)
            }
            Hint::Expiry if is_expiry(v.s) => c.offer(DataType::CardExpiry, 90),
            Hint::Card if (12..=19).contains(&d.len()) && card_chars(v.s) && luhn(d) => {
                // Private-label and domestic cards outside the IIN table.
                c.offer(DataType::CreditCard, 88)
            }
            _ => {}
        }
        return;
    }
    if v.len() >= 15 && v.len() <= 42 && v.ascii {
        if let Some(conf) = iban(v.s, hint) {
            c.offer(DataType::Iban, conf);
        }
    }
}

fn card_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-')
}

fn account_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-')
}

/// Issuer of a card number by IIN range and length.
pub fn card_issuer(d: &[u8]) -> Option<&'static str> {
    let p = |n: usize| num(d.get(..n).unwrap_or_default());
    let len = d.len();
    let issuer = match d.first()? {
        4 if matches!(len, 13 | 16 | 19) => "visa",
        5 if (51..=55).contains(&p(2)) && len == 16 => "mastercard",
        2 if (2221..=2720).contains(&p(4)) && len == 16 => "mastercard",
        2 if (2200..=2204).contains(&p(4)) && len == 16 => "mir",
        3 if matches!(p(2), 34 | 37) && len == 15 => "amex",
        3 if (3528..=3589).contains(&p(4)) && (16..=19).contains(&len) => "jcb",
        3 if ((300..=305).contains(&p(3)) || p(4) == 3095 || matches!(p(2), 36 | 38 | 39))
            && (14..=19).contains(&len) =>
        {
            "diners"
        }
        6 if (p(4) == 6011 || (644..=649).contains(&p(3)) || p(2) == 65)
            && (16..=19).contains(&len) =>
        {
            "discover"
        }
        6 if p(2) == 62 && (16..=19).contains(&len) => "unionpay",
        5 | 6
            if matches!(p(4), 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761..=6763)
                && (12..=19).contains(&len) =>
        {
            "maestro"
        }
        _ => return None,
    };
    Some(issuer)
}

fn card(d: &[u8], hint: Hint, c: &mut Cand) {
    if !luhn(d) || card_issuer(d).is_none() {
        return;
    }
    c.offer(
        DataType::CreditCard,
        if hint == Hint::Card { 97 } else { 80 },
    );
}

/// SSA rules: area 001-899 except 666, group 01-99, serial 0001-9999, and a
/// few numbers published as examples.
pub fn ssn_valid(d: &[u8]) -> bool {
    let (area, group, serial) = (
        num(d.get(0..3).unwrap_or_default()),
        num(d.get(3..5).unwrap_or_default()),
        num(d.get(5..9).unwrap_or_default()),
    );
    d.len() == 9
        && area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !matches!(
            (area, group, serial),
            (78, 5, 1120) | (219, 9, 9999) | (123, 45, 6789)
        )
}

fn ssn(v: &Val, d: &[u8], hint: Hint, c: &mut Cand) {
    if !ssn_valid(d) {
        return;
    }
    let b = v.s.as_bytes();
    let grouped = b.len() == 11
        && matches!(
            (b.get(3), b.get(6)),
            (Some(b'-'), Some(b'-')) | (Some(b' '), Some(b' '))
        );
    let conf = match (hint == Hint::Ssn, grouped, v.all_digits) {
        (true, true, _) | (true, _, true) => 96,
        (false, true, _) => 80,
        _ => return,
    };
    c.offer(DataType::UsSsn, conf);
}

/// ABA routing number: Federal Reserve prefix and the 3-7-1 checksum.
pub fn routing_valid(d: &[u8]) -> bool {
    let prefix = num(d.get(..2).unwrap_or_default());
    let w = [3u32, 7, 1, 3, 7, 1, 3, 7, 1];
    let sum: u32 = d.iter().zip(w).map(|(&x, w)| u32::from(x) * w).sum();
    d.len() == 9
        && (prefix <= 12
            || (21..=32).contains(&prefix)
            || (61..=72).contains(&prefix)
            || prefix == 80)
        && sum % 10 == 0
}

/// `MM/YY`, `MM/YYYY`, `MM-YY`, `MMYY`, `YYYY-MM`.
fn is_expiry(s: &str) -> bool {
    let s: String = s.chars().filter(|c| *c != ' ').collect();
    let b = s.as_bytes();
    let dd = |r: std::ops::Range<usize>| {
        b.get(r)
            .filter(|x| x.iter().all(u8::is_ascii_digit))
            .map(|x| x.iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0')))
    };
    let month = |m: Option<u32>| m.is_some_and(|m| (1..=12).contains(&m));
    match b.len() {
        4 => month(dd(0..2)) && dd(2..4).is_some(),
        5 => matches!(b.get(2), Some(b'/' | b'-')) && month(dd(0..2)) && dd(3..5).is_some(),
        7 if matches!(b.get(2), Some(b'/' | b'-')) => {
            month(dd(0..2)) && dd(3..7).is_some_and(|y| (2000..=2099).contains(&y))
        }
        7 if matches!(b.get(4), Some(b'/' | b'-')) => {
            month(dd(5..7)) && dd(0..4).is_some_and(|y| (2000..=2099).contains(&y))
        }
        _ => false,
    }
}

/// (country, IBAN length).
const IBAN_LENGTHS: &[(&str, u8)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// Confidence that `s` is an IBAN: country length table and mod 97.
fn iban(s: &str, hint: Hint) -> Option<u8> {
    let mut buf = [0u8; 34];
    let mut n = 0;
    for b in s.bytes() {
        if b == b' ' {
            continue;
        }
        if !b.is_ascii_alphanumeric() {
            return None;
        }
        *buf.get_mut(n)? = b.to_ascii_uppercase();
        n += 1;
    }
    let iban = buf.get(..n)?;
    let country = std::str::from_utf8(iban.get(..2)?).ok()?;
    let &(_, len) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country)?;
    if n != usize::from(len) || !iban.get(2..4)?.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Mod 97 over BBAN + country + check digits, letters as 10..35.
    let mut rem: u32 = 0;
    for &b in iban.iter().skip(4).chain(iban.iter().take(4)) {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some(if matches!(hint, Hint::Iban | Hint::Account) {
        98
    } else {
        95
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{is, not};
    use super::*;

    #[test]
    fn cards() {
        is("card_number", "4111 1111 1111 1111", DataType::CreditCard);
        is("", "5555555555554444", DataType::CreditCard);
        is("", "378282246310005", DataType::CreditCard);
        is("", "6011-1111-1111-1117", DataType::CreditCard);
        is("pan", "3530111333300000", DataType::CreditCard);
        is("cc_number", "2223003122003222", DataType::CreditCard);
        assert_eq!(
            card_issuer(&[3, 7, 8, 2, 8, 2, 2, 4, 6, 3, 1, 0, 0, 0, 5]),
            Some("amex")
        );
    }

    #[test]
    fn card_look_alikes() {
        not("order_id", "4111111111111111"); // passes Luhn, but it is an order id
        not("tracking_number", "4000056655665556");
        not("", "4111111111111112"); // Luhn fails
        not("", "1234567812345670"); // Luhn passes, no issuer
        not("", "0000000000000000");
        not("timestamp", "1700000000000");
        not("card_number", "4111111111111112");
    }

    #[test]
    fn iban_checks() {
        is("", "DE89 3704 0044 0532 0130 00", DataType::Iban);
        is("iban", "GB29NWBK60161331926819", DataType::Iban);
        is("", "FR1420041010050500013M02606", DataType::Iban);
        not("", "DE89 3704 0044 0532 0130 01"); // mod 97 fails
        not("", "DE89370400440532013"); // wrong length for DE
        not("", "ZZ89370400440532013000");
    }

    #[test]
    fn ssn_rules() {
        is("", "536-22-1234", DataType::UsSsn);
        is("ssn", "536221234", DataType::UsSsn);
        not("", "536221234");
        not("", "666-22-1234");
        not("", "900-22-1234");
        not("ssn", "000-12-3456");
        not("", "536-00-1234");
        not("", "536-22-0000");
        not("", "078-05-1120");
    }

    #[test]
    fn keyed_numbers() {
        is("routing_number", "021000021", DataType::UsRoutingNumber);
        not("routing_number", "021000022");
        not("", "021000021");
        is("account_number", "110-234-567890", DataType::BankAccount);
        is("계좌번호", "3333-01-1234567", DataType::BankAccount);
        not("account_id", "110234567890");
        not("account_number", "AKIA1234567890ABCDEF");
        is("cvv", "123", DataType::CardCvv);
        not("cvv", "12345");
        not("quantity", "123");
        is("expiry", "09/27", DataType::CardExpiry);
        is("exp_date", "2027-09", DataType::CardExpiry);
        not("expiry", "13/27");
    }
}
