#!/usr/bin/env python3
"""Writes fixtures/classify/labeled.jsonl: a labeled corpus of synthetic values
for the sensitive-data classifier (tests/classify_corpus.rs).

Every value is generated here from a fixed seed (or written by hand below):
card numbers from public test IINs with a computed Luhn digit, RRNs with valid
dates/gender digits and computed check digits, IBANs with computed mod-97
digits, tokens from random characters in each vendor's documented shape, and
names/addresses from small invented lists. No value belongs to a real person
or account. Re-running the script reproduces the file byte for byte.

    python3 scripts/gen_classify_corpus.py
"""
import base64
import json
import os
import random
import string

R = random.Random(20240404)
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "classify", "labeled.jsonl")

rows = []


def pos(t, key, value):
    rows.append({"key": key, "value": value, "type": t})


def neg(key, value):
    rows.append({"key": key, "value": value, "type": None})


def digits(n):
    return "".join(R.choice(string.digits) for _ in range(n))


def chars(alphabet, n):
    return "".join(R.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


def luhn_complete(prefix, length):
    body = prefix + digits(length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def luhn_ok(num):
    total = 0
    for i, ch in enumerate(reversed(num)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def group4(n, sep):
    return sep.join(n[i:i + 4] for i in range(0, len(n), 4))


def rand_date(y0=1950, y1=2005):
    y = R.randint(y0, y1)
    m = R.randint(1, 12)
    d = R.randint(1, 28)
    return y, m, d


W = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]


def rrn(foreign=False, check=True):
    y, m, d = rand_date(1940, 2015)
    if y >= 2000:
        g = R.choice([7, 8] if foreign else [3, 4])
    else:
        g = R.choice([5, 6] if foreign else [1, 2])
    first12 = f"{y % 100:02d}{m:02d}{d:02d}{g}" + digits(5)
    s = sum(int(c) * w for c, w in zip(first12, W))
    c = ((13 if foreign else 11) - s % 11) % 10
    if not check:
        c = (c + R.randint(1, 9)) % 10
    return first12 + str(c)


def brn():
    while True:
        first9 = str(R.randint(101, 999)) + digits(6)
        w = [1, 3, 7, 1, 3, 7, 1, 3, 5]
        s = sum(int(c) * x for c, x in zip(first9, w)) + int(first9[8]) * 5 // 10
        c = (10 - s % 10) % 10
        n = first9 + str(c)
        if len(set(n)) > 1:
            return n


def iban(country, bban):
    rearranged = bban + country + "00"
    num = "".join(str(int(ch, 36)) for ch in rearranged)
    check = 98 - int(num) % 97
    return f"{country}{check:02d}{bban}"


def routing():
    while True:
        prefix = R.choice(["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "21", "22", "26", "31", "32", "61", "63", "67"])
        first8 = prefix + digits(6)
        w = [3, 7, 1, 3, 7, 1, 3, 7]
        s = sum(int(c) * x for c, x in zip(first8, w))
        return first8 + str((10 - s % 10) % 10)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(alg="HS256"):
    header = {"alg": alg, "typ": "JWT"}
    claims = {"sub": digits(8), "iat": 1700000000 + R.randint(0, 10**7), "exp": 1800000000, "scope": "read"}
    sig = b64url(bytes(R.randrange(256) for _ in range(32)))
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}.{sig}"


FIRST = ["Alice", "Brian", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Ingrid", "Jonas", "Keiko", "Liam"]
LAST = ["Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Sato", "Tanaka", "Umar", "Varga", "Weber", "Young", "Zhou"]
KR_SUR = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오"]
KR_GIVEN = ["민준", "서연", "지호", "하은", "도윤", "수아", "예준", "지우", "시우", "서윤"]
STREETS = ["Maple Avenue", "Oak Street", "Cedar Lane", "Birch Road", "Elm Drive", "Harbor Way"]
CITIES = ["Springfield", "Riverton", "Lakeside", "Fairview", "Greenville"]
KR_ADDR = ["서울특별시 강남구 테헤란로", "부산광역시 해운대구 센텀중앙로", "경기도 성남시 분당구 판교역로", "대전광역시 유성구 대학로"]

# ---------------------------------------------------------------- positives

for key in ["email", "", "contact_email", "userEmail", "이메일", "reply_to", "", "emailAddress"]:
    user = R.choice(FIRST).lower() + "." + R.choice(LAST).lower() + R.choice(["", str(R.randint(1, 99))])
    pos("email", key, f"{user}@{R.choice(['example.com', 'example.org', 'test.example.co.kr', 'mail.example.net'])}")

phone_samples = [
    ("phone", lambda: f"+1 {R.randint(201, 989)} {R.randint(200, 999)} {digits(4)}"),
    ("", lambda: f"+1-{R.randint(201, 989)}-{R.randint(200, 999)}-{digits(4)}"),
    ("tel", lambda: f"+44 20 {digits(4)} {digits(4)}"),
    ("", lambda: f"+49 30 {digits(7)}"),
    ("phoneNumber", lambda: f"+33 6 {digits(2)} {digits(2)} {digits(2)} {digits(2)}"),
    ("", lambda: f"+81 90 {digits(4)} {digits(4)}"),
    ("전화번호", lambda: f"02-{R.randint(200, 999)}-{digits(4)}"),
    ("contact_phone", lambda: f"({R.randint(201, 989)}) {R.randint(200, 999)}-{digits(4)}"),
    ("fax", lambda: f"+82 2 {digits(4)} {digits(4)}"),
]
for key, f in phone_samples:
    pos("phone_number", key, f())

for key, f in [
    ("", lambda: f"010-{digits(4)}-{digits(4)}"),
    ("mobile", lambda: f"010{digits(8)}"),
    ("", lambda: f"+82 10-{digits(4)}-{digits(4)}"),
    ("휴대폰번호", lambda: f"010 {digits(4)} {digits(4)}"),
    ("", lambda: f"+821{0}{digits(8)}"),
    ("phone", lambda: f"011-{digits(3)}-{digits(4)}"),
    ("hp", lambda: f"010-{digits(4)}-{digits(4)}"),
    ("", lambda: f"010.{digits(4)}.{digits(4)}"),
]:
    pos("kr_mobile_number", key, f())

for key, dashed, check in [("", True, True), ("", True, True), ("", True, False), ("rrn", False, True),
                           ("주민등록번호", True, False), ("jumin_no", False, False), ("residentNumber", True, True),
                           ("주민번호", False, True), ("", False, True)]:
    n = rrn(False, check)
    pos("kr_rrn", key, n[:6] + "-" + n[6:] if dashed else n)

for key, dashed, check in [("", True, True), ("", True, False), ("foreigner_reg_no", False, True),
                           ("외국인등록번호", True, True), ("alienRegNo", False, False), ("", True, True)]:
    n = rrn(True, check)
    pos("kr_foreigner_reg_no", key, n[:6] + "-" + n[6:] if dashed else n)

for key, dashed in [("", True), ("", True), ("business_no", False), ("사업자등록번호", True), ("bizRegNo", False), ("", True)]:
    n = brn()
    pos("kr_business_reg_no", key, f"{n[:3]}-{n[3:5]}-{n[5:]}" if dashed else n)

for key in ["passport_no", "여권번호", "passportNumber", "passport", "여권번호", "passport_no"]:
    if R.random() < 0.5:
        pos("kr_passport", key, R.choice("MSRODG") + digits(8))
    else:
        pos("kr_passport", key, "M" + digits(3) + R.choice(string.ascii_uppercase) + digits(4))

for key in ["", "driver_license", "면허번호", "licenseNo", "", "driversLicense"]:
    region = R.choice([11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 28])
    pos("kr_driver_license", key, f"{region}-{digits(2)}-{digits(6)}-{digits(2)}")
pos("kr_driver_license", "면허번호", f"서울 {digits(2)}-{digits(6)}-{digits(2)}")

for key in ["이름", "name", "customer_name", "성명", "fullName", "이름", "예금주", "name"]:
    pos("kr_name", key, R.choice(KR_SUR) + R.choice(KR_GIVEN))

cards = [("4", 16), ("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16), ("3528", 16), ("4", 13), ("62", 16)]
for (prefix, length), key in zip(cards, ["card_number", "", "pan", "cardNumber", "카드번호", "ccNumber", "", "card", "credit_card", "", "debitCardNumber"]):
    n = luhn_complete(prefix, length)
    pos("credit_card", key, R.choice([n, group4(n, " "), group4(n, "-")]) if length == 16 else n)

for country, bban in [("DE", digits(18)), ("GB", "NWBK" + digits(14)), ("FR", digits(10) + "A" + digits(12)), ("NL", "ABNA" + digits(10)),
                      ("ES", digits(20)), ("IT", "X" + digits(10) + digits(12)), ("CH", digits(17))]:
    v = iban(country, bban)
    if R.random() < 0.4:
        v = " ".join(v[i:i + 4] for i in range(0, len(v), 4))
    pos("iban", R.choice(["", "iban", "account_iban", ""]), v)

for key in ["account_number", "계좌번호", "bankAccount", "acct_no", "accountNo", "bank_account_number", "depositAccount"]:
    pos("bank_account", key, R.choice([f"{digits(3)}-{digits(6)}-{digits(5)}", digits(12), f"{digits(4)}-{digits(2)}-{digits(7)}", digits(10)]))

for key in ["routing_number", "aba", "routingNumber", "routing", "abaRoutingNumber", "routing_no"]:
    pos("us_routing_number", key, routing())

for key in ["cvv", "cvc", "securityCode", "cvv2", "card_cvc", "cvc2"]:
    pos("card_cvv", key, digits(R.choice([3, 3, 4])))

for key in ["expiry", "exp_date", "expirationDate", "cardExpiry", "expiry", "valid_thru"]:
    m = R.randint(1, 12)
    y = R.randint(25, 35)
    pos("card_expiry", key, R.choice([f"{m:02d}/{y}", f"{m:02d}/20{y}", f"{m:02d}{y}", f"20{y}-{m:02d}"]))


def ssn():
    while True:
        a = R.randint(1, 899)
        if a == 666:
            continue
        return f"{a:03d}", f"{R.randint(1, 99):02d}", f"{R.randint(1, 9999):04d}"


for key, fmt in [("", "-"), ("", "-"), ("ssn", ""), ("socialSecurityNumber", "-"), ("ssn", " "), ("", "-"), ("us_ssn", "")]:
    a, g, s = ssn()
    pos("us_ssn", key, f"{a}{fmt}{g}{fmt}{s}")

for key, v in [("passport_number", digits(9)), ("passportNo", "C" + digits(2) + "X" + digits(2) + "T" + digits(2)),
               ("passport", digits(2) + "AB" + digits(5)), ("passport_id", "A" + digits(7)), ("passportNumber", "K" + digits(8)),
               ("여권번호", "E" + digits(8))]:
    pos("passport_number", key, v)

for key in ["dob", "birthDate", "date_of_birth", "생년월일", "birthday", "dateOfBirth"]:
    y, m, d = rand_date()
    v = R.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{y}{m:02d}{d:02d}", f"{y}-{m:02d}-{d:02d}T00:00:00Z"])
    if key == "생년월일":
        v = f"{y % 100:02d}{m:02d}{d:02d}"
    pos("date_of_birth", key, v)

for key in ["street_address", "address", "shipping_address", "addressLine1", "주소", "homeAddress", "billing_address"]:
    if key == "주소":
        pos("street_address", key, f"{R.choice(KR_ADDR)} {R.randint(1, 300)}")
    else:
        pos("street_address", key, f"{R.randint(1, 9999)} {R.choice(STREETS)}, {R.choice(CITIES)}")
pos("street_address", "address", f"{R.choice(KR_ADDR)} {R.randint(1, 300)}, {R.randint(1, 20)}층")

for key, v in [("zip", digits(5)), ("postal_code", "SW1A 1AA"), ("postcode", "K1A 0B1"), ("zipCode", f"{digits(5)}-{digits(4)}"),
               ("우편번호", digits(5)), ("postalCode", f"{digits(3)}-{digits(4)}")]:
    pos("postal_code", key, v)

for key in ["first_name", "lastName", "fullName", "cardholder_name", "customerName", "given_name", "recipient_name"]:
    v = R.choice(FIRST) if key in ("first_name", "given_name") else R.choice(LAST) if key == "lastName" else f"{R.choice(FIRST)} {R.choice(LAST)}"
    pos("person_name", key, v)

for key, v in [("gender", "female"), ("sex", "M"), ("성별", "여"), ("gender", "Male"), ("userGender", "non-binary"), ("성별", "남성")]:
    pos("gender", key, v)

for key in ["", "ip", "client_ip", "remoteAddr", "", "sourceIp", "ip_address"]:
    pos("ipv4", key, f"{R.choice([23, 45, 89, 131, 172, 192, 203, 198])}.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(1, 254)}")

for key in ["", "ip", "client_ip", "", "ipv6", "remote_address"]:
    groups = [format(R.randint(0, 0xffff), "x") for _ in range(8)]
    v = ":".join(groups) if R.random() < 0.5 else "2001:db8:" + ":".join(groups[:2]) + "::" + groups[7]
    pos("ipv6", key, v)

for key in ["", "mac", "macAddress", "", "hw_addr", "bssid"]:
    octets = [R.randint(0, 255) for _ in range(6)]
    octets[0] |= 0x02
    sep = R.choice([":", "-"])
    pos("mac_address", key, sep.join(f"{o:02x}" for o in octets) if R.random() < 0.5 else sep.join(f"{o:02X}" for o in octets))

for key in ["", "token", "id_token", "access_token", "", "jwt"]:
    pos("jwt", key, jwt(R.choice(["HS256", "RS256", "ES256"])))
pos("jwt", "Authorization", "Bearer " + jwt())

B32 = string.ascii_uppercase + "234567"
for key in ["", "aws_access_key_id", "accessKeyId", "", "AWS_ACCESS_KEY_ID", "account_number"]:
    pos("aws_access_key_id", key, R.choice(["AKIA", "ASIA", "AKIA"]) + chars(B32, 16))

for key in ["aws_secret_access_key", "secretAccessKey", "AWS_SECRET_ACCESS_KEY", "aws_secret", "SecretAccessKey", "awsSecretKey"]:
    while True:
        v = chars(ALNUM + "/+", 40)
        if any(c.isupper() for c in v) and any(c.islower() for c in v) and any(c.isdigit() for c in v):
            break
    pos("aws_secret_access_key", key, v)

for key in ["", "key", "api_key", "", "googleApiKey", "GOOGLE_API_KEY"]:
    pos("gcp_api_key", key, "AIza" + chars(B64URL, 35))

for key in ["AccountKey", "storage_key", "azure_storage_key", "primaryKey", "storageAccountKey", "AZURE_STORAGE_KEY"]:
    pos("azure_storage_key", key, base64.b64encode(bytes(R.randrange(256) for _ in range(64))).decode())

for _ in range(6):
    sig = base64.b64encode(bytes(R.randrange(256) for _ in range(32))).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    acct = chars(string.ascii_lowercase, 8)
    pos("azure_sas_token", R.choice(["", "sas_url", "upload_url"]),
        f"https://{acct}.blob.core.windows.net/{chars(string.ascii_lowercase, 5)}/f.bin?sv=2022-11-02&ss=b&srt=co&sp=rl&se=2030-01-0{R.randint(1, 9)}T00:00:00Z&spr=https&sig={sig}")

for _ in range(6):
    key = base64.b64encode(bytes(R.randrange(256) for _ in range(64))).decode()
    acct = chars(string.ascii_lowercase, 10)
    if R.random() < 0.6:
        v = f"DefaultEndpointsProtocol=https;AccountName={acct};AccountKey={key};EndpointSuffix=core.windows.net"
    else:
        v = f"Endpoint=sb://{acct}.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={key[:44]}"
    pos("azure_connection_string", R.choice(["", "connection_string", "AZURE_STORAGE_CONNECTION_STRING"]), v)

for key in ["", "github_token", "", "GITHUB_TOKEN", "token", ""]:
    if R.random() < 0.7:
        pos("github_token", key, R.choice(["ghp_", "gho_", "ghs_", "ghu_"]) + chars(ALNUM, 36))
    else:
        pos("github_token", key, "github_pat_" + chars(ALNUM, 22) + "_" + chars(ALNUM, 59))

for key in ["", "gitlab_token", "PRIVATE-TOKEN", "", "CI_JOB_TOKEN", "token"]:
    pos("gitlab_token", key, R.choice(["glpat-", "glpat-", "gldt-", "glrt-"]) + chars(ALNUM + "_-", 18) + digits(2))

for key in ["", "slack_token", "SLACK_BOT_TOKEN", "", "token", "slackToken"]:
    kind = R.choice(["xoxb", "xoxp", "xapp"])
    if kind == "xoxb":
        v = f"xoxb-{digits(12)}-{digits(13)}-{chars(ALNUM, 24)}"
    elif kind == "xoxp":
        v = f"xoxp-{digits(12)}-{digits(12)}-{digits(13)}-{chars(HEX, 32)}"
    else:
        v = f"xapp-1-A{chars(string.ascii_uppercase + string.digits, 10)}-{digits(13)}-{chars(HEX, 64)}"
    pos("slack_token", key, v)

for key in ["", "webhook_url", "SLACK_WEBHOOK", "", "url", "slackWebhookUrl"]:
    up = string.ascii_uppercase + string.digits
    pos("slack_webhook", key, f"https://hooks.slack.com/services/T{chars(up, 8)}/B{chars(up, 10)}/{chars(ALNUM, 24)}")

for key in ["", "stripe_key", "STRIPE_SECRET_KEY", "", "publishableKey", "webhook_secret"]:
    prefix = {"publishableKey": "pk_live_", "webhook_secret": "whsec_"}.get(key, R.choice(["sk_live_", "rk_live_", "sk_test_"]))
    pos("stripe_key", key, prefix + chars(ALNUM, R.choice([24, 32, 99])))

for key in ["", "twilio_api_key", "", "TWILIO_API_KEY", "apiKeySid", ""]:
    pos("twilio_api_key", key, "SK" + chars(HEX, 32))

for key in ["", "account_sid", "TWILIO_ACCOUNT_SID", "", "accountSid", ""]:
    pos("twilio_account_sid", key, "AC" + chars(HEX, 32))

for key in ["", "sendgrid_api_key", "SENDGRID_API_KEY", "", "api_key", ""]:
    pos("sendgrid_api_key", key, "SG." + chars(B64URL, 22) + "." + chars(B64URL, 43))

for label in ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "PRIVATE KEY"]:
    body = base64.b64encode(bytes(R.randrange(256) for _ in range(120))).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    pos("pem_private_key", R.choice(["", "private_key", "privateKey", "ssh_key"]), f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n")

for key, v in [
    ("", f"postgres://app:{chars(ALNUM, 12)}@db.internal:5432/orders"),
    ("DATABASE_URL", f"postgresql://svc_user:{chars(ALNUM, 16)}@10.0.3.7/app?sslmode=require"),
    ("", f"mysql://root:{chars(ALNUM, 10)}@mysql.local:3306/shop"),
    ("mongo_uri", f"mongodb+srv://admin:{chars(ALNUM, 14)}@cluster0.{chars(string.ascii_lowercase, 5)}.example.net/test"),
    ("", f"redis://:{chars(ALNUM, 20)}@cache.internal:6379/0"),
    ("", f"amqp://guest:{chars(ALNUM, 8)}@rabbit:5672/vhost"),
    ("jdbc_url", f"jdbc:postgresql://db:5432/app?user=app&password={chars(ALNUM, 10)}"),
    ("connection_string", f"Server=sql01;Database=Shop;User Id=sa;Password={chars(ALNUM, 12)};"),
]:
    pos("database_url", key, v)

for key, v in [("", f"https://deploy:{chars(ALNUM, 12)}@git.example.com/repo.git"), ("callback", f"http://admin:{chars(ALNUM, 10)}@10.1.2.3:8080/hook"),
               ("", f"ftp://upload:{chars(ALNUM, 9)}@ftp.example.org/in"), ("proxy", f"http://proxyuser:{chars(ALNUM, 11)}@proxy.example.com:3128"),
               ("", f"sftp://backup:{chars(ALNUM, 14)}@backup.example.net/data"), ("repo_url", f"https://ci:{chars(ALNUM, 20)}@example.com/x.git")]:
    pos("url_credentials", key, v)

for key in ["authorization", "Authorization", "", "proxy-authorization", "authorization", ""]:
    user = R.choice(FIRST).lower()
    pos("basic_auth", key, "Basic " + base64.b64encode(f"{user}:{chars(ALNUM, 10)}".encode()).decode())

for key, v in [("authorization", "Bearer " + chars(ALNUM, 32)), ("Authorization", "Bearer " + chars(HEX, 40)),
               ("access_token", chars(ALNUM + "-_", 43)), ("refresh_token", "def50200" + chars(HEX, 64)),
               ("authToken", chars(ALNUM, 28)), ("x-auth-token", chars(ALNUM, 36)), ("", "Bearer " + chars(ALNUM + "._-", 48))]:
    pos("bearer_token", key, v)

for key in ["JSESSIONID", "sessionid", "PHPSESSID", "connect.sid", "session_token", "_myapp_session", "sid", "ASP.NET_SessionId"]:
    v = chars(HEX.upper(), 32) if key == "JSESSIONID" else ("s%3A" + chars(ALNUM, 24) + "." + chars(ALNUM, 20)) if key == "connect.sid" else chars(string.ascii_lowercase + string.digits, 26)
    pos("session_token", key, v)

for key, v in [("password", "hunter2!x"), ("passwd", chars(ALNUM, 12)), ("new_password", "Spring2024!"), ("비밀번호", "qwer1234!"),
               ("pwd", chars(ALNUM + "!@#", 10)), ("db_password", chars(ALNUM, 16)), ("password_confirm", "Correct Horse Battery"), ("userPassword", "letmein99")]:
    pos("password", key, v)

for key in ["api_key", "client_secret", "x-api-key", "apiSecret", "secret", "APP_SECRET", "webhookSecret", "private_key"]:
    v = chars(ALNUM, 32) if R.random() < 0.7 else f"{chars(HEX, 8)}-{chars(HEX, 4)}-4{chars(HEX, 3)}-a{chars(HEX, 3)}-{chars(HEX, 12)}"
    pos("secret", key, v)

# ---------------------------------------------------------------- negatives

# Numbers that pass Luhn with a card IIN, under order/id/tracking keys.
for key in ["order_id", "orderId", "tracking_number", "transaction_id", "invoice_no", "sku", "id", "requestId", "reference", "order_number"]:
    neg(key, luhn_complete(R.choice(["4", "51", "6011"]), 16))
# Card-shaped numbers that fail Luhn, or have no issuer.
for key in ["card_number", "", "pan", "", "cardNumber"]:
    n = luhn_complete("4", 16)
    neg(key, n[:-1] + str((int(n[-1]) + R.randint(1, 9)) % 10))
for key in ["", "", "", "number", ""]:
    n = luhn_complete(R.choice(["1", "7", "8", "9"]), 16)
    neg(key, n)
neg("", "0000000000000000")
neg("card_number", "4444 4444 4444 4444" if not luhn_ok("4444444444444444") else "4444 4444 4444 4445")

# AKIA look-alikes that fail the charset or length.
for key in ["account_number", "account_number", "accountNo", "", "", "ref"]:
    neg(key, "AKIA" + digits(16))
neg("", "AKIA" + chars(B32, 15))
neg("", "AKIA" + chars(B32, 17))
neg("account_number", "AKID" + chars(B32, 16))

# Version strings and build numbers that look like IPv4.
for key in ["version", "app_version", "osVersion", "build", "release", "sdkVersion", "v", "agentVersion"]:
    neg(key, f"{R.randint(1, 12)}.{R.randint(0, 20)}.{R.randint(0, 99)}.{R.randint(0, 9999)}")
for v in ["256.1.1.1", "1.2.3", "01.02.03.04", "0.0.0.0", "255.255.255.255", "1.2.3.4.5", "10.0.0"]:
    neg("", v)

# Timestamps that look like phone numbers or other ids.
for key in ["created_at", "timestamp", "ts", "updatedAt", "", "expires", "iat", "time", "", "lastModified"]:
    neg(key, str(R.randint(1500000000, 1800000000)) if R.random() < 0.6 else str(R.randint(1500000000000, 1800000000000)))

# UUIDs under keys that would otherwise suggest data.
for key in ["id", "card_number", "phone", "account_number", "", "passport", "user_id", "ssn", "iban", "email"]:
    neg(key, f"{chars(HEX, 8)}-{chars(HEX, 4)}-4{chars(HEX, 3)}-a{chars(HEX, 3)}-{chars(HEX, 12)}")

# RRN-shaped numbers with impossible dates or gender digits, and bare 13 digits.
for v in ["901301-1234567", "900132-2345678", "850229-1234567", "900101-" + "9" + digits(6)[:0] + "x234567"]:
    neg("", v)
for _ in range(4):
    n = rrn(False, False)
    neg("", n)  # bare, no check digit, no key
for key in ["order_id", "barcode", "gtin", "tracking_number"]:
    neg(key, rrn(False, True))
for _ in range(3):
    neg("", f"{digits(2)}{R.randint(13, 99)}{digits(2)}-{R.randint(1, 4)}{digits(6)}")

# Business-registration look-alikes: bare ten digits (even with a valid check), bad checks.
for _ in range(4):
    neg("", brn())
for _ in range(3):
    n = brn()
    neg("", f"{n[:3]}-{n[3:5]}-{n[5:9]}{(int(n[9]) + 1) % 10}")
neg("phone", "000-00-00000")

# IBAN look-alikes.
for country, bban in [("DE", digits(18)), ("GB", "NWBK" + digits(14)), ("FR", digits(23)), ("NL", "ABNA" + digits(10))]:
    v = iban(country, bban)
    bad = v[:2] + f"{(int(v[2:4]) + 1) % 100:02d}" + v[4:]
    neg("", bad)
neg("", "DE89370400440532013")
neg("", "ZZ00123456789012345678")
neg("iban", "NOT-AN-IBAN")
neg("", "ABCDEFGHIJKLMNOPQRST")

# SSN look-alikes.
for v in ["000-12-3456", "666-12-3456", "912-34-5678", "123-45-6789", "078-05-1120", "536-00-1234", "536-22-0000", "219-09-9999"]:
    neg(R.choice(["", "ssn"]), v)
for _ in range(3):
    a, g, s = ssn()
    neg("", f"{a}{g}{s}")  # nine bare digits without a key
for key in ["zip_plus", "order_id", "part_no"]:
    a, g, s = ssn()
    neg(key, f"{a}-{g}-{s}") if key == "order_id" else neg(key, f"{a}{g}{s}")

# Email look-alikes.
for v in ["icon@2x.png", "user@localhost", "@jane_doe", "git@github.com:org/repo.git", "jane.doe(at)example.com", "a..b@example.com",
          "name@domain", "logo@3x.webp", "user@.example.com", "foo@bar..com", "hello world@example.com", "x@y.z"]:
    neg(R.choice(["", "email", "image", "handle"]), v)

# Phone look-alikes.
for v in ["+999 1234 5678", "+1 015 555 0100", "+44 12", "12345", "+1234567.89", "020-1234-5678", "0101234567"]:
    neg(R.choice(["", "amount", "code"]), v)
for key in ["order_no", "invoice_id", "quantity", "", ""]:
    neg(key, digits(10))
neg("order_id", f"010-{digits(4)}-{digits(4)}")
neg("price", "1234567890")

# Routing/account/cvv/expiry look-alikes.
for _ in range(3):
    r = routing()
    neg("", r)
    neg("routing_number", r[:-1] + str((int(r[-1]) + 1) % 10))
for key, v in [("account_id", digits(12)), ("accountType", "checking"), ("account_number", "N/A"), ("account_number", "ACCT-" + chars(string.ascii_uppercase, 6)),
               ("cvv", "12345"), ("cvv", "abc"), ("quantity", "123"), ("expiry", "13/27"), ("expiry", "2027-13"), ("expires_in", "3600"), ("count", "0412")]:
    neg(key, v)

# Korean look-alikes.
for key, v in [("name", "사과"), ("title", "홍길동"), ("name", "안녕하세요"), ("product_name", "김치찌개"), ("description", "서울특별시 강남구"),
               ("passport", "X1234"), ("", "M12345678"), ("driver_license", "99-12-345678-90"), ("", "111234567890"), ("license", "MIT"),
               ("category", "남성의류"), ("이름", "12345")]:
    neg(key, v)

# Personal-data look-alikes without their keys, or with the wrong ones.
for key, v in [("created_at", "1987-06-15"), ("", "1987-06-15"), ("dob", "1987-13-15"), ("dob", "not a date"), ("start_date", "15/06/1987"),
               ("email_address_verified", "1600 Amphitheatre Parkway"), ("wallet_address", "0x52908400098527886E0F7030069857D2E4169EE7"),
               ("address", "N/A"), ("description", "1600 Amphitheatre Parkway, Mountain View"), ("zip", "9404"), ("", "94043"),
               ("gender", "purple"), ("type", "female"), ("passport_number", "ABCDEFGH"), ("", "C01X00T47"), ("name", "Widget Pro"),
               ("first_name", "R2D2"), ("product_name", "Jane"), ("username", "jdoe42"), ("title", "Senior Engineer"), ("server_address", "10 Main St Building 4"),
               ("city", "Springfield"), ("country", "KR"), ("locale", "ko-KR"), ("birth_place", "Busan")]:
    neg(key, v)

# Network look-alikes.
for key, v in [("", "12:30:45"), ("", "::"), ("", "a::b"), ("", "2001:db8:::1"), ("", "00:00:00:00:00:00"), ("", "00:1A:2B:3C:4D"),
               ("time", "12:30:45.123"), ("", "00:1A-2B:3C:4D:5E"), ("ratio", "16:9"), ("", "fe80:"), ("build", "192.168.1.1"), ("version", "2.0.0.1")]:
    neg(key, v)

# Credential look-alikes: placeholders, masked values, public material, wrong shapes.
for key, v in [("password", "********"), ("password", "null"), ("password", ""), ("password", "${DB_PASSWORD}"), ("password_policy", "min8chars"),
               ("password_min_length", "8"), ("passwordless", "true"), ("has_password", "false"), ("api_key", "your-api-key-here"),
               ("api_key", "<API_KEY>"), ("api_key", "short"), ("client_secret", "{{ client_secret }}"), ("secret", "xxxxxxxxxxxxxxxxxxxx"),
               ("next_page_token", "CiAKGjBpNDd2Nmp2Zml2cXRpYjN0MTVh"), ("csrf_token", chars(ALNUM, 32)), ("cursor", chars(ALNUM, 24)),
               ("pageToken", chars(ALNUM, 40)), ("token_type", "Bearer"), ("expires_in", "3600"), ("session", "true"), ("session", "deleted"),
               ("sessionTimeout", "1800"), ("authorization", "Bearer null"), ("authorization", "Bearer ${TOKEN}"), ("authorization", "Basic " + base64.b64encode(b"nocolonhere").decode()),
               ("authorization", "Bearer"), ("idempotency_key", chars(ALNUM, 32)), ("nonce", chars(ALNUM, 16)), ("aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")]:
    neg(key, v)
for key in ["commit", "sha", "etag", "hash", "", "checksum", "digest", "", "git_sha", "content_hash"]:
    neg(key, chars(HEX, R.choice([40, 64])))
for v in ["eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.sig", "eyJub3RhbGciOjF9.eyJhIjoxfQ.sig", "a.b.c", "eyJhbGciOiJIUzI1NiJ9", "eyJ" + chars(ALNUM, 30)]:
    neg("", v)
for v in ["ghp_short", "ghp_" + chars(ALNUM, 30), "glpat-short", "xoxb-not-a-token", "xoxb-12345", "sk_prod_" + chars(ALNUM, 24),
          "sk_live_short", "SK" + chars(HEX.upper(), 32), "AC" + chars(HEX.upper(), 32), "SG.short.token", "SG." + chars(ALNUM, 22),
          "AIza" + chars(ALNUM, 30), "AIzaSy", "github_pat_short", "https://hooks.slack.com/services/T123/B456/short", "pk_live_", "whsec_"]:
    neg("", v)
for v in ["-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1Lf\n-----END PUBLIC KEY-----",
          "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQsw\n-----END CERTIFICATE-----",
          "-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----"]:
    neg(R.choice(["", "private_key", "certificate"]), v)
for v in ["postgres://db.internal:5432/orders", "postgres://app@db.internal/orders", "postgres://app:${DB_PASSWORD}@db/orders",
          "mysql://localhost/test", "https://example.com/a:b@c", "https://example.com/path?user=x", "redis://cache:6379/0",
          "mongodb://mongo1,mongo2/?replicaSet=rs0", "https://user@example.com/", "http://[::1]:8080/", "Server=sql01;Database=Shop;Trusted_Connection=True;",
          "https://acme.blob.core.windows.net/c/f.txt", "https://example.com/?sv=1&sig=short", "DefaultEndpointsProtocol=https;AccountName=acme;EndpointSuffix=core.windows.net"]:
    neg(R.choice(["", "url", "database_url", "endpoint"]), v)
azure_like = base64.b64encode(bytes(R.randrange(256) for _ in range(64))).decode()
neg("", azure_like)  # a 64-byte base64 value without a key name: could be anything
neg("signature", azure_like)
for _ in range(3):
    v = chars(ALNUM + "/+", 40)
    neg("", v)  # a 40-character base64 value without an AWS key name

# Everyday values under everyday keys.
for key, v in [("status", "active"), ("lang", "en-US"), ("content_type", "application/json"), ("method", "GET"),
               ("user_agent", "Mozilla/5.0 (X11; Linux x86_64)"), ("color", "#ff8800"), ("amount", "1234.56"), ("currency", "KRW"),
               ("count", "42"), ("enabled", "true"), ("message", "Hello, world"), ("path", "/api/v1/users/123"), ("url", "https://example.com/docs"),
               ("code", "ERR_INVALID_INPUT"), ("region", "ap-northeast-2"), ("bucket", "my-app-assets"), ("slug", "spring-sale-2024"),
               ("page", "3"), ("limit", "100"), ("sort", "created_at:desc"), ("filter", "status eq 'open'"), ("tz", "Asia/Seoul"),
               ("hex_color", "00ff00"), ("isbn", "978-3-16-148410-0"), ("coordinates", "37.5665,126.9780"), ("duration", "PT1H30M"),
               ("mime", "image/png"), ("", "lorem ipsum dolor sit amet"), ("", "true"), ("", "null"), ("", "404"), ("", "2024-01-15"),
               ("", "12.5"), ("", "ko"), ("", "OK"), ("request_id", "req_" + chars(ALNUM, 20)), ("trace_id", chars(HEX, 32)),
               ("order_id", "ORD-2024-" + digits(6)), ("tracking", "1Z999AA10123456784"), ("product_id", digits(13)), ("ean", "4006381333931"),
               ("build_number", digits(9)), ("port", "8080"), ("pid", "4242"), ("size", "1048576"), ("phone_verified", "true"),
               ("email_verified", "false"), ("card_brand", "visa"), ("card_last4", "4242"), ("card_type", "credit"), ("bank_name", "Example Bank"),
               ("ip_version", "4"), ("mac_vendor", "Example Corp"), ("gender_options", "male,female,other"), ("password_hint", "favourite pet")]:
    neg(key, v)

os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w", encoding="utf-8") as f:
    for row in rows:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")

n_pos = sum(1 for r in rows if r["type"])
n_neg = sum(1 for r in rows if not r["type"])
print(f"wrote {len(rows)} rows ({n_pos} positive, {n_neg} negative) to {os.path.normpath(OUT)}")
