//! Korean identifiers: resident registration number (주민등록번호), foreigner
//! registration number (외국인등록번호), business registration number
//! (사업자등록번호), passport and driver's licence numbers, and names.
//!
//! The RRN check digit raises confidence but is not required: numbers issued
//! from October 2020 on end in a random digit instead.

use super::keys::Hint;
use super::value::{repeated, valid_date};
use super::{Cand, DataType, Val};

pub(super) fn detect(v: &Val, hint: Hint, c: &mut Cand) {
    if v.numeric_like {
        if let Some(d) = v.digits() {
            match d.len() {
                13 => resident(v, d, hint, c),
                10 => business(v, d, hint, c),
                12 => licence(v.s, d, hint, c),
                _ => {}
            }
        }
        return;
    }
    match hint {
        Hint::Passport if is_kr_passport(v.s) => c.offer(DataType::KrPassport, 95),
        Hint::PersonName if is_kr_name(v.s) => c.offer(DataType::KrName, 92),
        // Plain `name` also names products: only full three- or four-syllable names.
        Hint::NameGeneric if is_kr_name(v.s) && v.s.chars().filter(|c| *c != ' ').count() >= 3 => {
            c.offer(DataType::KrName, 82)
        }
        Hint::DriverLicense | Hint::None if !v.ascii => {
            // `서울 12-345678-90`: region name, then 2-6-2 digits.
            if let Some(d) = v.digits() {
                if d.len() == 10 && REGIONS.iter().any(|r| v.s.starts_with(r)) {
                    let conf = if hint == Hint::DriverLicense { 95 } else { 75 };
                    c.offer(DataType::KrDriverLicense, conf);
                }
            }
        }
        _ => {}
    }
}

const RRN_WEIGHTS: [u32; 12] = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5];

fn weighted(d: &[u8]) -> u32 {
    d.iter()
        .zip(RRN_WEIGHTS)
        .map(|(&x, w)| u32::from(x) * w)
        .sum()
}

/// The RRN check digit (numbers issued before October 2020).
pub fn rrn_check_digit(d: &[u8]) -> Option<u8> {
    d.get(..12)?;
    Some(((11 - weighted(d) % 11) % 10) as u8)
}

/// The foreigner registration number check digit (before October 2020).
pub fn frn_check_digit(d: &[u8]) -> Option<u8> {
    d.get(..12)?;
    Some(((13 - weighted(d) % 11) % 10) as u8)
}

/// Birth date and gender digit of a 13-digit RRN/FRN: `Some(foreigner)`.
fn resident_kind(d: &[u8]) -> Option<bool> {
    let n = |i: usize| u32::from(d.get(i).copied().unwrap_or(0));
    let (yy, mm, dd, g) = (n(0) * 10 + n(1), n(2) * 10 + n(3), n(4) * 10 + n(5), n(6));
    let century = match g {
        1 | 2 | 5 | 6 => 1900,
        3 | 4 | 7 | 8 => 2000,
        9 | 0 => 1800,
        _ => return None,
    };
    valid_date(century + yy, mm, dd).then_some((5..=8).contains(&g))
}

fn resident(v: &Val, d: &[u8], hint: Hint, c: &mut Cand) {
    let Some(foreigner) = resident_kind(d) else {
        return;
    };
    if repeated(d) {
        return;
    }
    // YYMMDD-GNNNNNN is the only way these are written.
    let dashed = v.s.len() == 14 && matches!(v.s.as_bytes().get(6), Some(b'-' | b' '));
    if !v.all_digits && !dashed {
        return;
    }
    let (t, check) = if foreigner {
        (DataType::KrForeignerRegNo, frn_check_digit(d))
    } else {
        (DataType::KrRrn, rrn_check_digit(d))
    };
    let check_ok = check.is_some() && check == d.get(12).copied();
    let keyed = matches!(hint, Hint::Rrn | Hint::Frn);
    let conf = match (keyed, dashed, check_ok) {
        (true, _, true) => 98,
        (true, _, false) => 93,
        (false, true, true) => 95,
        (false, true, false) => 80,
        (false, false, true) => 75,
        (false, false, false) => 40,
    };
    c.offer(t, conf);
}

/// 사업자등록번호 check digit over its first nine digits.
pub fn brn_valid(d: &[u8]) -> bool {
    const W: [u32; 9] = [1, 3, 7, 1, 3, 7, 1, 3, 5];
    if d.len() != 10 {
        return false;
    }
    let mut sum: u32 = d.iter().zip(W).map(|(&x, w)| u32::from(x) * w).sum();
    sum += u32::from(d.get(8).copied().unwrap_or(0)) * 5 / 10;
    let check = (10 - sum % 10) % 10;
    Some(check as u8) == d.get(9).copied()
}

fn business(v: &Val, d: &[u8], hint: Hint, c: &mut Cand) {
    if repeated(d) || !brn_valid(d) || super::value::num(d.get(..3).unwrap_or_default()) < 101 {
        return;
    }
    let groups: Vec<usize> = v.s.split('-').map(str::len).collect();
    let dashed = groups == [3, 2, 5];
    if !dashed && !v.all_digits {
        return;
    }
    let conf = match (hint == Hint::Brn, dashed) {
        (true, _) => 96,
        (false, true) => 85,
        (false, false) => 40,
    };
    c.offer(DataType::KrBusinessRegNo, conf);
}

/// Driver's licence region codes (11 서울 ... 28 경기북부; 27 is unused).
fn licence_region(code: u32) -> bool {
    (11..=28).contains(&code) && code != 27
}

/// Region names that prefix newer-style licence numbers.
const REGIONS: &[&str] = &[
    "서울", "부산", "경기", "강원", "충북", "충남", "전북", "전남", "경북", "경남", "제주", "대구",
    "인천", "광주", "대전", "울산",
];

fn licence(s: &str, d: &[u8], hint: Hint, c: &mut Cand) {
    if repeated(d) || !licence_region(super::value::num(d.get(..2).unwrap_or_default())) {
        return;
    }
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    let dashed = groups == [2, 2, 6, 2];
    let all_digits = s.bytes().all(|b| b.is_ascii_digit());
    let conf = match (hint == Hint::DriverLicense, dashed, all_digits) {
        (true, true, _) | (true, _, true) => 95,
        (false, true, _) => 75,
        _ => return,
    };
    c.offer(DataType::KrDriverLicense, conf);
}

/// `M12345678` (before 2021: M, S, R, O, D, G + 8 digits) or `M123A4567`
/// (from 2021: letter, 3 digits, letter, 4 digits).
pub fn is_kr_passport(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    b.len() == 9
        && matches!(b.first(), Some(b'M' | b'S' | b'R' | b'O' | b'D' | b'G'))
        && ((digits(1..9))
            || (digits(1..4) && b.get(4).is_some_and(u8::is_ascii_uppercase) && digits(5..9)))
}

/// Common Korean surnames (one syllable) covering nearly everyone.
const SURNAMES: &str = "김이박최정강조윤장임한오서신권황안송류유전홍고문양손배백허남심노하곽성차주우구민진나지엄채원천방공현함변염여추도소석선설마길연위표명기반왕금옥육인맹제모탁국어은편용예경봉사부가복태목형계피두감음빈동온호범좌팽승간상시갈단견당";
const DOUBLE_SURNAMES: &[&str] = &[
    "남궁", "제갈", "선우", "황보", "독고", "사공", "서문", "동방",
];

/// Two to four Hangul syllables starting with a known surname (a space
/// between surname and given name is allowed).
pub fn is_kr_name(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| *c != ' ').collect();
    if s.chars().filter(|c| *c == ' ').count() > 1 {
        return false;
    }
    let n = compact.chars().count();
    if !(2..=4).contains(&n)
        || !compact
            .chars()
            .all(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c))
    {
        return false;
    }
    let Some(first) = compact.chars().next() else {
        return false;
    };
    (n <= 4 && DOUBLE_SURNAMES.iter().any(|d| compact.starts_with(d)) && n >= 3)
        || (SURNAMES.contains(first) && n <= 4)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{is, not};
    use super::*;

    fn with_check(prefix12: &str, frn: bool) -> String {
        let d: Vec<u8> = prefix12.bytes().map(|b| b - b'0').collect();
        let c = if frn {
            frn_check_digit(&d)
        } else {
            rrn_check_digit(&d)
        };
        format!("{}-{}{}", &prefix12[..6], &prefix12[6..], c.unwrap())
    }

    #[test]
    fn rrn_positive() {
        is("", &with_check("900101123456", false), DataType::KrRrn);
        is(
            "resident_no",
            &with_check("040229312345", false).replace('-', ""),
            DataType::KrRrn,
        );
    }

    #[test]
    fn rrn_rules() {
        // 2002-02-29 does not exist: the helper above built it, the validator rejects it.
        not("", "020229-4123450");
        let ok = with_check("850315234567", false);
        is("", &ok, DataType::KrRrn);
        // Without the check digit (post-2020 numbers) still found when dashed or keyed.
        let mut bad = ok.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == '0' { '1' } else { '0' });
        is("", &bad, DataType::KrRrn);
        is("주민번호", &bad.replace('-', ""), DataType::KrRrn);
        not("", &bad.replace('-', "")); // 13 bare digits, no check, no key
        not("", "901301-1234567"); // month 13
        not("", "900101-5234567x");
        not("order_id", &ok.replace('-', ""));
    }

    #[test]
    fn frn() {
        is(
            "",
            &with_check("900101512345", true),
            DataType::KrForeignerRegNo,
        );
        is(
            "foreigner_reg_no",
            &with_check("050505712345", true).replace('-', ""),
            DataType::KrForeignerRegNo,
        );
        not("", "900141-5123456");
    }

    #[test]
    fn brn() {
        assert!(brn_valid(&[2, 2, 0, 8, 1, 6, 2, 5, 1, 7]));
        is("", "220-81-62517", DataType::KrBusinessRegNo);
        is("biz_no", "2208162517", DataType::KrBusinessRegNo);
        not("", "2208162517"); // ten bare digits pass the check one time in ten
        not("", "220-81-62518");
    }

    #[test]
    fn passport_and_licence() {
        is("passport_no", "M12345678", DataType::KrPassport);
        is("여권번호", "M123A4567", DataType::KrPassport);
        not("", "M12345678");
        not("passport", "X1234");
        is(
            "driver_license",
            "11-12-345678-90",
            DataType::KrDriverLicense,
        );
        is("", "13-05-123456-01", DataType::KrDriverLicense);
        is("면허번호", "서울 12-345678-90", DataType::KrDriverLicense);
        not("", "99-12-345678-90");
        not("", "111234567890");
    }

    #[test]
    fn names() {
        is("이름", "홍길동", DataType::KrName);
        is("name", "김민준", DataType::KrName);
        is("customer_name", "남궁민수", DataType::KrName);
        not("name", "안녕하세요반갑");
        not("title", "홍길동");
        not("name", "사과");
    }
}
