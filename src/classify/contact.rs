//! Contact details: email addresses, international phone numbers (E.164
//! country code and national-number length, libphonenumber-style) and Korean
//! mobile numbers.

use super::keys::Hint;
use super::value::repeated;
use super::{Cand, DataType, Val};

pub(super) fn detect(v: &Val, hint: Hint, c: &mut Cand) {
    if v.s.contains('@') {
        if is_email(v.s) {
            c.offer(DataType::Email, if hint == Hint::Email { 98 } else { 92 });
        }
        return;
    }
    if v.ndigits >= 7 && v.ndigits <= 17 && phone_chars(v.s) {
        phone(v, hint, c);
    }
}

/// Top-level domains that are really file extensions (`icon@2x.png`).
const FILE_TLDS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "js", "css", "map", "json", "html",
    "htm", "php", "txt", "pdf", "zip", "gz", "woff", "woff2", "ttf", "mp4", "mp3",
];

/// `local@domain.tld`: RFC 5321 local-part characters, DNS labels, an
/// alphabetic TLD that is not a file extension.
pub fn is_email(s: &str) -> bool {
    let s = s.strip_prefix("mailto:").unwrap_or(s);
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.len() > 253 || domain.len() < 4 {
        return false;
    }
    let lb = local.as_bytes();
    let local_ok = lb
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&c))
        && lb.first() != Some(&b'.')
        && lb.last() != Some(&b'.')
        && !local.contains("..");
    if !local_ok {
        return false;
    }
    let mut labels = 0;
    let mut tld = "";
    for label in domain.split('.') {
        let b = label.as_bytes();
        if b.is_empty()
            || b.len() > 63
            || b.first() == Some(&b'-')
            || b.last() == Some(&b'-')
            || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            return false;
        }
        labels += 1;
        tld = label;
    }
    let tld_ok =
        (tld.len() >= 2 && tld.len() <= 24 && tld.bytes().all(|c| c.is_ascii_alphabetic()))
            || (tld.starts_with("xn--") && tld.len() > 5);
    labels >= 2 && tld_ok && !FILE_TLDS.iter().any(|t| tld.eq_ignore_ascii_case(t))
}

/// Digits, one leading `+`, and the separators people write in numbers.
fn phone_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let body = b.strip_prefix(b"+").unwrap_or(b);
    body.first()
        .is_some_and(|c| c.is_ascii_digit() || *c == b'(')
        && body
            .iter()
            .all(|&c| c.is_ascii_digit() || matches!(c, b' ' | b'-' | b'.' | b'(' | b')'))
}

/// (country code, shortest and longest national significant number).
const COUNTRIES: &[(u16, u8, u8)] = &[
    (1, 10, 10),
    (7, 10, 10),
    (20, 8, 10),
    (27, 9, 9),
    (30, 10, 10),
    (31, 9, 9),
    (32, 8, 9),
    (33, 9, 9),
    (34, 9, 9),
    (36, 8, 9),
    (39, 6, 11),
    (40, 9, 9),
    (41, 9, 9),
    (43, 4, 13),
    (44, 9, 10),
    (45, 8, 8),
    (46, 7, 10),
    (47, 8, 8),
    (48, 9, 9),
    (49, 6, 13),
    (51, 8, 9),
    (52, 10, 10),
    (53, 6, 8),
    (54, 10, 11),
    (55, 10, 11),
    (56, 9, 9),
    (57, 8, 10),
    (58, 10, 10),
    (60, 8, 10),
    (61, 9, 9),
    (62, 8, 12),
    (63, 8, 10),
    (64, 8, 10),
    (65, 8, 8),
    (66, 8, 9),
    (81, 9, 10),
    (82, 8, 10),
    (84, 9, 10),
    (86, 10, 11),
    (90, 10, 10),
    (91, 10, 10),
    (92, 9, 10),
    (93, 9, 9),
    (94, 9, 9),
    (95, 7, 10),
    (98, 10, 10),
    (212, 9, 9),
    (213, 8, 9),
    (216, 8, 8),
    (233, 9, 9),
    (234, 8, 10),
    (254, 9, 10),
    (255, 9, 9),
    (256, 9, 9),
    (351, 9, 9),
    (352, 4, 11),
    (353, 7, 9),
    (354, 7, 9),
    (358, 5, 12),
    (359, 8, 9),
    (370, 8, 8),
    (371, 8, 8),
    (372, 7, 8),
    (373, 8, 8),
    (374, 8, 8),
    (375, 9, 10),
    (380, 9, 9),
    (385, 8, 9),
    (386, 8, 8),
    (420, 9, 9),
    (421, 9, 9),
    (852, 8, 8),
    (853, 8, 8),
    (855, 8, 9),
    (856, 8, 10),
    (880, 10, 10),
    (886, 8, 9),
    (961, 7, 8),
    (962, 8, 9),
    (964, 10, 10),
    (965, 8, 8),
    (966, 9, 9),
    (971, 8, 9),
    (972, 8, 9),
    (973, 8, 8),
    (974, 8, 8),
    (976, 8, 8),
    (977, 8, 10),
    (994, 9, 9),
    (995, 9, 9),
    (998, 9, 9),
];

/// Country code and national significant number of E.164 digits, if the code
/// is known and the length fits it.
fn e164_split(d: &[u8]) -> Option<(u16, &[u8])> {
    if d.len() < 8 || d.len() > 15 {
        return None;
    }
    (1..=3).find_map(|n| {
        let cc = super::value::num(d.get(..n)?) as u16;
        let &(_, min, max) = COUNTRIES.iter().find(|&&(c, _, _)| c == cc)?;
        let nsn = d.get(n..)?;
        (nsn.len() >= usize::from(min) && nsn.len() <= usize::from(max)).then_some((cc, nsn))
    })
}

/// A Korean mobile national number without the trunk 0: 10 xxxx xxxx, or
/// 11/16/17/18/19 xxx(x) xxxx.
fn kr_mobile_nsn(nsn: &[u8]) -> bool {
    match nsn {
        [1, 0, rest @ ..] => rest.len() == 8,
        [1, 1 | 6 | 7 | 8 | 9, rest @ ..] => rest.len() == 7 || rest.len() == 8,
        _ => false,
    }
}

fn phone(v: &Val, hint: Hint, c: &mut Cand) {
    let Some(d) = v.digits() else { return };
    if repeated(d) {
        return;
    }
    let keyed = hint == Hint::Phone;
    if v.s.starts_with('+') {
        let Some((cc, nsn)) = e164_split(d) else {
            return;
        };
        if cc == 82 && kr_mobile_nsn(nsn) {
            c.offer(DataType::KrMobileNumber, if keyed { 97 } else { 92 });
            return;
        }
        if cc == 1 && !(nsn.first() >= Some(&2) && nsn.get(3) >= Some(&2)) {
            return; // NANP area code and exchange start with 2-9
        }
        c.offer(DataType::PhoneNumber, if keyed { 95 } else { 85 });
        return;
    }
    // Korean mobile with its trunk 0: 010-1234-5678.
    if let [0, rest @ ..] = d {
        if kr_mobile_nsn(rest) {
            let groups: Vec<&str> =
                v.s.split(['-', ' ', '.'])
                    .filter(|g| !g.is_empty())
                    .collect();
            let dashed = groups.len() == 3
                && groups.first().is_some_and(|g| g.len() == 3)
                && groups.last().is_some_and(|g| g.len() == 4);
            let conf = match (keyed, dashed, v.all_digits, d.len()) {
                (true, ..) => 97,
                (false, true, ..) => 90,
                (false, false, true, 11) => 75,
                _ => 50,
            };
            c.offer(DataType::KrMobileNumber, conf);
            return;
        }
    }
    if keyed && (7..=15).contains(&d.len()) {
        c.offer(DataType::PhoneNumber, 88);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{is, not};
    use super::*;

    #[test]
    fn email_positive() {
        is("email", "jane.doe@example.com", DataType::Email);
        is("", "user+tag@sub.example.co.kr", DataType::Email);
        is("contact", "o'brien@example.org", DataType::Email);
        assert!(is_email("mailto:a@b.io"));
    }

    #[test]
    fn email_negative() {
        not("image", "icon@2x.png");
        not("", "user@localhost");
        not("", "git@github.com:org/repo.git");
        not("email", "not-an-email");
        not("", "a..b@example.com");
        not("handle", "@jane_doe");
    }

    #[test]
    fn phone_positive() {
        is("phone", "+1 415 555 2671", DataType::PhoneNumber);
        is("", "+44 20 7946 0958", DataType::PhoneNumber);
        is("", "+49 30 1234567", DataType::PhoneNumber);
        is("tel", "(415) 555-2671", DataType::PhoneNumber);
        is("전화번호", "02-312-3456", DataType::PhoneNumber);
    }

    #[test]
    fn phone_negative() {
        not("", "+1 015 555 2671"); // NANP area code cannot start with 0
        not("", "+999 1234 5678"); // unassigned country code
        not("", "+44 12"); // too short
        not("timestamp", "1700000000");
        not("", "1700000000");
        not("phone", "0000000000");
        not("amount", "+1234567.89");
    }

    #[test]
    fn kr_mobile() {
        is("", "010-1234-5678", DataType::KrMobileNumber);
        is("mobile", "01012345678", DataType::KrMobileNumber);
        is("", "+82 10-1234-5678", DataType::KrMobileNumber);
        is("휴대폰", "011-234-5678", DataType::KrMobileNumber);
        not("order_id", "01012345678");
        not("", "0101234567");
        not("", "020-1234-5678");
    }
}
