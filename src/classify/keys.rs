//! Key-name hints: what a field, parameter, header or cookie name says about
//! its value. Names are normalised into lower-case words (camelCase,
//! snake_case, kebab-case, dotted and `XMLHttp`-style acronyms all split the
//! same way) and a compact form without separators; Korean key names
//! (이름, 주민번호, 전화번호 ...) are matched on their own text. No allocation.

/// What a key says about its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hint {
    None,
    // Look-alike contexts: identifiers, versions and times that resemble data.
    Id,
    Version,
    Time,
    // Personal data.
    Email,
    Phone,
    PersonName,
    /// Plain `name`: a person, a product, a file... weak.
    NameGeneric,
    Dob,
    Address,
    Postal,
    Gender,
    Passport,
    Ssn,
    // Korean identifiers.
    Rrn,
    Brn,
    Frn,
    DriverLicense,
    // Financial.
    Card,
    Cvv,
    Expiry,
    Iban,
    Account,
    Routing,
    // Network.
    Ip,
    Mac,
    // Credentials.
    Password,
    Secret,
    AwsSecret,
    AzureKey,
    Token,
    Session,
    Authorization,
    DbUrl,
}

impl Hint {
    /// A hint that says what a value is (not none, not a look-alike context).
    pub const fn is_specific(self) -> bool {
        !matches!(
            self,
            Hint::None | Hint::Id | Hint::Version | Hint::Time | Hint::NameGeneric
        )
    }

    /// Keys under which numbers that pass checks by chance are common.
    pub const fn is_lookalike_context(self) -> bool {
        matches!(self, Hint::Id | Hint::Version | Hint::Time)
    }

    pub const fn is_credential(self) -> bool {
        matches!(
            self,
            Hint::Password
                | Hint::Secret
                | Hint::AwsSecret
                | Hint::AzureKey
                | Hint::Token
                | Hint::Session
                | Hint::Authorization
        )
    }
}

const MAX_KEY: usize = 64;
const MAX_WORDS: usize = 8;

/// A key as lower-case ASCII words.
struct Norm {
    compact: [u8; MAX_KEY],
    len: usize,
    /// (start, end) of each word in `compact`.
    words: [(u8, u8); MAX_WORDS],
    nwords: usize,
}

impl Norm {
    fn new(key: &str) -> Norm {
        let mut n = Norm {
            compact: [0; MAX_KEY],
            len: 0,
            words: [(0, 0); MAX_WORDS],
            nwords: 0,
        };
        let b = key.as_bytes();
        let mut word_start: Option<usize> = None;
        for (i, &c) in b.iter().enumerate() {
            if n.len >= MAX_KEY {
                break;
            }
            if !c.is_ascii_alphanumeric() {
                n.close(&mut word_start);
                continue;
            }
            let prev = i.checked_sub(1).and_then(|p| b.get(p)).copied();
            let next = b.get(i + 1).copied();
            let boundary = c.is_ascii_uppercase()
                && match prev {
                    Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                    Some(p) if p.is_ascii_uppercase() => {
                        next.is_some_and(|x| x.is_ascii_lowercase())
                    }
                    _ => false,
                };
            if boundary {
                n.close(&mut word_start);
            }
            if word_start.is_none() {
                word_start = Some(n.len);
            }
            if let Some(slot) = n.compact.get_mut(n.len) {
                *slot = c.to_ascii_lowercase();
            }
            n.len += 1;
        }
        n.close(&mut word_start);
        n
    }

    fn close(&mut self, start: &mut Option<usize>) {
        if let Some(s) = start.take() {
            if let Some(w) = self.words.get_mut(self.nwords) {
                *w = (s as u8, self.len as u8);
                self.nwords += 1;
            } else if let Some(last) = self.words.last_mut() {
                // Fold the rest into the last word.
                last.1 = self.len as u8;
            }
        }
    }

    fn compact(&self) -> &[u8] {
        self.compact.get(..self.len).unwrap_or_default()
    }

    fn word(&self, i: usize) -> &[u8] {
        self.words
            .get(i)
            .and_then(|&(s, e)| self.compact.get(usize::from(s)..usize::from(e)))
            .unwrap_or_default()
    }

    fn last(&self) -> &[u8] {
        self.word(self.nwords.wrapping_sub(1))
    }

    fn is(&self, set: &[&str]) -> bool {
        set.iter().any(|w| self.compact() == w.as_bytes())
    }

    fn has(&self, sub: &str) -> bool {
        memchr::memmem::find(self.compact(), sub.as_bytes()).is_some()
    }

    fn has_any(&self, subs: &[&str]) -> bool {
        subs.iter().any(|s| self.has(s))
    }

    fn ends(&self, set: &[&str]) -> bool {
        set.iter().any(|s| self.compact().ends_with(s.as_bytes()))
    }

    fn any_word(&self, set: &[&str]) -> bool {
        (0..self.nwords).any(|i| set.iter().any(|w| self.word(i) == w.as_bytes()))
    }

    fn last_is(&self, set: &[&str]) -> bool {
        set.iter().any(|w| self.last() == w.as_bytes())
    }
}

/// Names repeat: the same headers and parameters on every request, so what
/// each says is worked out once per thread (it was a tenth of writing a
/// redacted exchange). Bounded: a memo is emptied when full, so a flood of
/// random names costs the work it would cost anyway, never memory.
const MEMO_ENTRIES: usize = 4096;

type Memo<T> = std::cell::RefCell<std::collections::HashMap<Box<str>, T>>;

thread_local! {
    static HINTS: Memo<Hint> = Memo::default();
    static HEADER_KINDS: Memo<HeaderKind> = Memo::default();
}

fn memoised<T: Copy>(
    memo: &'static std::thread::LocalKey<Memo<T>>,
    name: &str,
    work_out: fn(&str) -> T,
) -> T {
    if name.len() > MAX_KEY {
        return work_out(name);
    }
    memo.with(|m| {
        if let Some(&known) = m.borrow().get(name) {
            return known;
        }
        let value = work_out(name);
        let mut m = m.borrow_mut();
        if m.len() >= MEMO_ENTRIES {
            m.clear();
        }
        m.insert(name.into(), value);
        value
    })
}

/// What `key` says about its value.
pub fn hint(key: &str) -> Hint {
    memoised(&HINTS, key, work_out_hint)
}

fn work_out_hint(key: &str) -> Hint {
    if key.is_empty() {
        return Hint::None;
    }
    if !key.is_ascii() {
        if let Some(h) = korean_hint(key) {
            return h;
        }
    }
    let n = Norm::new(key);
    if n.len == 0 {
        return Hint::None;
    }
    ascii_hint(&n)
}

fn korean_hint(key: &str) -> Option<Hint> {
    const RULES: &[(&[&str], Hint)] = &[
        (&["비밀번호", "패스워드", "암호"], Hint::Password),
        (&["주민"], Hint::Rrn),
        (&["외국인"], Hint::Frn),
        (&["사업자"], Hint::Brn),
        (&["여권"], Hint::Passport),
        (&["면허"], Hint::DriverLicense),
        (&["카드번호", "카드 번호"], Hint::Card),
        (&["계좌"], Hint::Account),
        (&["이메일", "메일"], Hint::Email),
        (
            &["전화", "휴대폰", "핸드폰", "연락처", "휴대전화"],
            Hint::Phone,
        ),
        (&["생년월일", "생일"], Hint::Dob),
        (&["우편번호"], Hint::Postal),
        (&["주소"], Hint::Address),
        (&["성별"], Hint::Gender),
        (
            &["이름", "성명", "성함", "고객명", "회원명", "예금주"],
            Hint::PersonName,
        ),
    ];
    RULES
        .iter()
        .find(|(subs, _)| subs.iter().any(|s| key.contains(s)))
        .map(|&(_, h)| h)
}

fn ascii_hint(n: &Norm) -> Hint {
    // Credentials first: `session_id` is a session, not an id.
    if n.is(&[
        "session",
        "sessionid",
        "sid",
        "sessid",
        "jsessionid",
        "phpsessid",
        "connectsid",
        "aspnetsessionid",
        "sessiontoken",
        "sessionkey",
        "sessioncookie",
        "laravelsession",
        "ciSession",
        "cisession",
        "rackSession",
        "racksession",
        "sessionstate",
    ]) || n.ends(&["session", "sessionid", "sessid"])
    {
        return Hint::Session;
    }
    if n.last_is(&[
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "pass",
        "pw",
        "passcode",
        "pin",
        "pincode",
        "otp",
    ]) || n.is(&["securityanswer", "secretanswer", "mfacode", "totp"])
        || (n.has("password")
            && n.last_is(&[
                "confirm",
                "confirmation",
                "again",
                "repeat",
                "new",
                "old",
                "current",
            ]))
        || n.is(&[
            "newpassword",
            "oldpassword",
            "currentpassword",
            "userpassword",
            "adminpassword",
            "dbpassword",
            "confirmpassword",
            "passwordconfirm",
            "passwordconfirmation",
            "loginpassword",
            "mysqlpassword",
            "postgrespassword",
        ])
    {
        return Hint::Password;
    }
    if n.has("secretaccesskey") || (n.has("aws") && n.has("secret")) {
        return Hint::AwsSecret;
    }
    if n.has_any(&[
        "accountkey",
        "storagekey",
        "azurekey",
        "sharedaccesskey",
        "storageaccountkey",
    ]) || n.is(&["primarykey", "secondarykey"])
    {
        return Hint::AzureKey;
    }
    if n.is(&["authorization", "proxyauthorization", "auth"]) {
        return Hint::Authorization;
    }
    // Tokens that are no credentials: pagination, CSRF, push channels...
    let not_secret = n.has_any(&[
        "page",
        "cursor",
        "csrf",
        "xsrf",
        "continuation",
        "sync",
        "idempotency",
        "nonce",
    ]) || n.last_is(&[
        "type",
        "types",
        "expires",
        "expiry",
        "expiresin",
        "expiresat",
        "count",
        "url",
        "uri",
        "endpoint",
        "length",
        "len",
        "name",
        "id",
        "hint",
        "policy",
        "ttl",
        "scope",
        "format",
    ]);
    if !not_secret {
        if n.has_any(&[
            "apikey",
            "apisecret",
            "clientsecret",
            "secretkey",
            "appsecret",
            "privatekey",
            "signingkey",
            "encryptionkey",
            "masterkey",
            "webhooksecret",
            "authkey",
            "consumersecret",
            "appkey",
            "licensekey",
            "accesskey",
            "subscriptionkey",
            "tokensecret",
            "sharedsecret",
        ]) || n.any_word(&["secret", "secrets"])
            || n.is(&[
                "apikeys",
                "xapikey",
                "xfunctionskey",
                "ocpapimsubscriptionkey",
            ])
        {
            return Hint::Secret;
        }
        if n.has_any(&[
            "accesstoken",
            "refreshtoken",
            "authtoken",
            "idtoken",
            "bearer",
            "jwt",
        ]) || n.last_is(&["token", "tokens"])
            || n.is(&["xauthtoken", "xaccesstoken", "oauthtoken", "authentication"])
        {
            return Hint::Token;
        }
    } else if n.last_is(&["token", "tokens"])
        && n.has_any(&["page", "cursor", "continuation", "sync"])
    {
        // Opaque, random-looking, and no secret.
        return Hint::Id;
    }
    if n.has_any(&[
        "databaseurl",
        "dburl",
        "connectionstring",
        "connstr",
        "jdbcurl",
        "mongouri",
        "mongourl",
        "redisurl",
        "databaseuri",
        "dburi",
        "dbconnection",
        "datasourceurl",
        "amqpurl",
    ]) || n.is(&["dsn", "datasource", "connection"])
    {
        return Hint::DbUrl;
    }
    if n.is(&[
        "cvv",
        "cvc",
        "cvv2",
        "cvc2",
        "securitycode",
        "cardsecuritycode",
        "cardcvv",
        "cardcvc",
        "cvn",
    ]) {
        return Hint::Cvv;
    }
    if n.is(&[
        "expiry",
        "expirydate",
        "expdate",
        "expiration",
        "expirationdate",
        "cardexpiry",
        "cardexp",
        "ccexp",
        "ccexpiry",
        "cardexpiration",
        "validthru",
        "cardexpirydate",
        "expirymonthyear",
    ]) {
        return Hint::Expiry;
    }
    if n.has("cardholder") || n.has("holdername") {
        return Hint::PersonName;
    }
    if n.has_any(&[
        "cardnumber",
        "cardno",
        "ccnumber",
        "creditcard",
        "debitcard",
        "cardnum",
        "ccnum",
        "paymentcard",
    ]) || n.is(&[
        "card",
        "cards",
        "pan",
        "primaryaccountnumber",
        "paymentmethod",
    ]) {
        return Hint::Card;
    }
    if n.has("iban") {
        return Hint::Iban;
    }
    if n.has_any(&["routingnumber", "routingno", "abanumber", "routingtransit"])
        || n.is(&["routing", "aba", "rtn", "abarouting"])
    {
        return Hint::Routing;
    }
    if n.has_any(&[
        "accountnumber",
        "accountno",
        "acctno",
        "acctnum",
        "accountnum",
        "bankaccount",
        "depositaccount",
        "acctnumber",
        "gyejwa",
    ]) {
        return Hint::Account;
    }
    if n.is(&[
        "ssn",
        "socialsecuritynumber",
        "socialsecurity",
        "socialsecurityno",
        "usssn",
        "ssnumber",
    ]) || n.last_is(&["ssn"])
    {
        return Hint::Ssn;
    }
    if n.has_any(&[
        "residentregistration",
        "residentnumber",
        "residentregno",
        "residentno",
        "jumin",
        "residentid",
    ]) || n.is(&["rrn", "krrrn"])
    {
        return Hint::Rrn;
    }
    if n.has_any(&[
        "foreignerreg",
        "foreignerno",
        "foreignernumber",
        "alienreg",
        "alienno",
        "foreignerid",
    ]) || n.is(&["frn", "arc", "arcnumber"])
    {
        return Hint::Frn;
    }
    if n.has_any(&[
        "businessreg",
        "businessnumber",
        "bizno",
        "bizregno",
        "bizreg",
        "saupja",
        "businessno",
        "corpregistrationno",
        "businessid",
    ]) || n.is(&["brn", "krbrn"])
    {
        return Hint::Brn;
    }
    if n.has_any(&[
        "driverlicense",
        "driverslicense",
        "driverlicence",
        "driverslicence",
        "drivinglicense",
        "drivinglicence",
        "licenseno",
        "licensenumber",
        "licenceno",
        "licencenumber",
        "dlnumber",
    ]) || n.is(&["dl", "dlno", "license", "licence"])
    {
        return Hint::DriverLicense;
    }
    if n.has("passport") {
        return Hint::Passport;
    }
    if n.has("email")
        || n.any_word(&["mail", "emails"])
        || n.is(&[
            "mail",
            "emailaddr",
            "mailaddress",
            "replyto",
            "from",
            "to",
            "cc",
            "bcc",
        ])
    {
        return Hint::Email;
    }
    if n.has_any(&["phone", "mobile", "msisdn", "telephone", "cellular"])
        || n.any_word(&["tel", "cell", "fax", "hp", "mob"])
        || n.is(&["contactnumber", "contactno", "telno", "hpno", "phoneno"])
    {
        return Hint::Phone;
    }
    if n.has_any(&["macaddress", "macaddr", "hwaddr", "hardwareaddress"])
        || n.any_word(&["mac", "bssid"])
    {
        return Hint::Mac;
    }
    if n.any_word(&["ip", "ipv4", "ipv6", "ips"])
        || n.ends(&["ipaddress", "ipaddr", "ipv4", "ipv6"])
        || n.is(&[
            "clientip",
            "remoteip",
            "serverip",
            "sourceip",
            "srcip",
            "dstip",
            "destip",
            "userip",
            "hostip",
            "publicip",
            "privateip",
            "localip",
            "remoteaddr",
            "remoteaddress",
            "clientaddr",
            "clientaddress",
            "peeraddr",
            "xforwardedfor",
            "xrealip",
            "ipaddress",
        ])
    {
        return Hint::Ip;
    }
    if n.has_any(&[
        "dateofbirth",
        "birthdate",
        "birthday",
        "birthdt",
        "birthymd",
        "birthdt",
    ]) || n.is(&["dob", "bday", "birth", "born", "bornon"])
        || n.last_is(&["dob"])
    {
        return Hint::Dob;
    }
    if n.has_any(&["zipcode", "postalcode", "postcode", "zipcd"])
        || n.is(&["zip", "postal", "plz"])
        || n.last_is(&["zip"])
    {
        return Hint::Postal;
    }
    if n.is(&["gender", "sex", "usergender", "customergender"]) || n.last_is(&["gender"]) {
        return Hint::Gender;
    }
    if n.any_word(&["address", "addr", "street", "addresses"])
        || n.has_any(&[
            "streetaddress",
            "addressline",
            "homeaddress",
            "mailingaddress",
            "billingaddress",
            "shippingaddress",
        ])
        || n.is(&["address1", "address2", "line1", "line2", "residence"])
    {
        // Addresses of other things.
        if n.has_any(&[
            "wallet", "contract", "server", "host", "web", "url", "memory", "base", "bind",
            "listen", "proxy", "node", "peer", "local", "remote", "gateway", "bitcoin", "eth",
            "hash",
        ]) {
            return Hint::None;
        }
        return Hint::Address;
    }
    if n.has_any(&[
        "firstname",
        "lastname",
        "fullname",
        "givenname",
        "familyname",
        "middlename",
        "surname",
        "realname",
        "customername",
        "recipientname",
        "sendername",
        "patientname",
        "membername",
        "contactname",
        "accountholder",
        "legalname",
        "billingname",
        "shippingname",
        "personname",
        "employeename",
        "studentname",
        "ownername",
        "payername",
        "payeename",
        "nickname",
        "korname",
        "koreanname",
        "englishname",
        "username2",
    ]) || n.is(&["fname", "lname", "forename", "name1"])
    {
        return Hint::PersonName;
    }
    if n.is(&["name", "displayname", "nm"]) {
        return Hint::NameGeneric;
    }
    // Look-alike contexts, last so that `card_number` etc. won above.
    if n.any_word(&["version", "ver", "semver", "build", "release", "revision"])
        || n.is(&[
            "v",
            "vsn",
            "appversion",
            "osversion",
            "sdkversion",
            "agentversion",
        ])
        || n.ends(&["version"])
    {
        return Hint::Version;
    }
    if n.last_is(&[
        "timestamp",
        "time",
        "ts",
        "at",
        "epoch",
        "millis",
        "ms",
        "date",
        "datetime",
        "created",
        "updated",
        "modified",
        "seconds",
        "secs",
        "expires",
        "exp",
        "iat",
        "nbf",
        "duration",
    ]) || n.ends(&["timestamp", "time", "epoch"])
        || n.is(&["ts", "t"])
    {
        return Hint::Time;
    }
    if n.last_is(&[
        "id",
        "ids",
        "uuid",
        "guid",
        "ref",
        "reference",
        "code",
        "sku",
        "seq",
        "key",
        "hash",
        "checksum",
        "digest",
        "count",
        "total",
        "amount",
        "price",
        "qty",
        "quantity",
        "index",
        "idx",
        "offset",
        "limit",
        "size",
        "port",
        "pid",
        "sha",
        "etag",
    ]) || n.has_any(&[
        "orderid",
        "invoice",
        "tracking",
        "transaction",
        "ordernumber",
        "orderno",
        "requestid",
        "traceid",
        "spanid",
        "correlation",
        "reference",
        "serialnumber",
        "serialno",
    ]) || n.is(&["oid", "uid", "gid", "id"])
        // Product codes carry their own check digits and pass others' by chance.
        || n.any_word(&["barcode", "gtin", "ean", "ean13", "upc", "isbn", "imei", "iccid"])
    {
        return Hint::Id;
    }
    Hint::None
}

/// Keys that say nothing by themselves (`{"card": {"number": ...}}`): their
/// value takes the hint of the enclosing key.
pub fn is_generic(key: &str) -> bool {
    [
        "number", "no", "num", "value", "val", "data", "text", "raw", "nr", "digits",
    ]
    .iter()
    .any(|g| key.eq_ignore_ascii_case(g))
}

/// How a header is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// Protocol plumbing and infrastructure addresses (X-Forwarded-For and
    /// the like name every client; reporting them would drown the rest).
    Skip,
    Cookie,
    SetCookie,
    /// Holds a URI whose query may carry tokens (Referer, Location).
    Uri,
    Value,
}

pub fn header_kind(name: &str) -> HeaderKind {
    memoised(&HEADER_KINDS, name, work_out_header_kind)
}

fn work_out_header_kind(name: &str) -> HeaderKind {
    const SKIP: &[&str] = &[
        "host",
        "content-length",
        "content-type",
        "accept",
        "accept-encoding",
        "accept-language",
        "accept-charset",
        "accept-ranges",
        "user-agent",
        "connection",
        "date",
        "cache-control",
        "pragma",
        "etag",
        "if-none-match",
        "if-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "last-modified",
        "expires",
        "vary",
        "server",
        "transfer-encoding",
        "content-encoding",
        "upgrade",
        "te",
        "trailer",
        "range",
        "content-range",
        "age",
        "via",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "origin",
        "keep-alive",
        "strict-transport-security",
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "x-xss-protection",
        "traceparent",
        "tracestate",
        "x-request-id",
        "x-correlation-id",
        "x-amzn-trace-id",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "access-control-allow-origin",
        "access-control-allow-headers",
        "access-control-allow-methods",
        "access-control-expose-headers",
        "access-control-max-age",
        "access-control-request-headers",
        "access-control-request-method",
        "link",
        "alt-svc",
        "content-disposition",
        "content-language",
        "expect",
        "dnt",
        "priority",
        "x-requested-with",
        "x-powered-by",
        "referrer-policy",
        "permissions-policy",
        // Correlation ids and challenges: identifiers of requests, not secrets.
        "x-request-id",
        "request-id",
        "x-correlation-id",
        "x-trace-id",
        "traceparent",
        "tracestate",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-amzn-trace-id",
        "www-authenticate",
    ];
    if name.eq_ignore_ascii_case("cookie") {
        return HeaderKind::Cookie;
    }
    if name.eq_ignore_ascii_case("set-cookie") {
        return HeaderKind::SetCookie;
    }
    if ["referer", "location", "content-location"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
    {
        return HeaderKind::Uri;
    }
    if SKIP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || name.len() > 4
            && name
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("sec-"))
    {
        return HeaderKind::Skip;
    }
    HeaderKind::Value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_styles_normalise_alike() {
        for k in [
            "dateOfBirth",
            "date_of_birth",
            "date-of-birth",
            "DateOfBirth",
            "DATE_OF_BIRTH",
            "birthDate",
        ] {
            assert_eq!(hint(k), Hint::Dob, "{k}");
        }
        for k in [
            "cardNumber",
            "card_number",
            "card-number",
            "CCNumber",
            "creditCard",
        ] {
            assert_eq!(hint(k), Hint::Card, "{k}");
        }
        assert_eq!(hint("userIPAddress"), Hint::Ip);
        assert_eq!(hint("client_ip"), Hint::Ip);
        assert_eq!(hint("X-Api-Key"), Hint::Secret);
        assert_eq!(hint("apiKey"), Hint::Secret);
    }

    #[test]
    fn korean_keys() {
        assert_eq!(hint("이름"), Hint::PersonName);
        assert_eq!(hint("주민번호"), Hint::Rrn);
        assert_eq!(hint("주민등록번호"), Hint::Rrn);
        assert_eq!(hint("전화번호"), Hint::Phone);
        assert_eq!(hint("휴대폰번호"), Hint::Phone);
        assert_eq!(hint("계좌번호"), Hint::Account);
        assert_eq!(hint("user_비밀번호"), Hint::Password);
    }

    #[test]
    fn look_alike_words_do_not_match() {
        assert_eq!(hint("zip"), Hint::Postal);
        assert_ne!(hint("description"), Hint::Ip);
        assert_ne!(hint("recipient"), Hint::Ip);
        assert_ne!(hint("bypass"), Hint::Password);
        assert_ne!(hint("compass"), Hint::Password);
        assert_eq!(hint("order_id"), Hint::Id);
        assert_eq!(hint("cardId"), Hint::Id);
        assert_eq!(hint("next_page_token"), Hint::Id);
        assert_eq!(hint("csrf_token"), Hint::None);
        assert_eq!(hint("token_type"), Hint::None);
        assert_eq!(hint("wallet_address"), Hint::None);
        assert_eq!(hint("email_address"), Hint::Email);
        assert_eq!(hint("app_version"), Hint::Version);
        assert_eq!(hint("created_at"), Hint::Time);
        assert_eq!(hint("sessionId"), Hint::Session);
        assert_eq!(hint("password_confirm"), Hint::Password);
        assert_eq!(hint("password_policy"), Hint::None);
        assert_eq!(hint("pin"), Hint::Password);
        assert_eq!(hint("card_pin"), Hint::Password);
        assert_eq!(hint("secret_answer"), Hint::Password);
        assert_eq!(hint("X-Api-Key"), Hint::Secret);
        assert_ne!(hint("spinner"), Hint::Password);
        assert_ne!(hint("pinned"), Hint::Password);
    }

    #[test]
    fn headers() {
        assert_eq!(header_kind("Cookie"), HeaderKind::Cookie);
        assert_eq!(header_kind("X-Forwarded-For"), HeaderKind::Skip);
        assert_eq!(header_kind("Authorization"), HeaderKind::Value);
        assert_eq!(header_kind("Sec-Fetch-Mode"), HeaderKind::Skip);
        assert_eq!(header_kind("Referer"), HeaderKind::Uri);
    }
}
