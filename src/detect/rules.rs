//! The detection rules as data: each rule's id, family, OWASP API Security
//! Top 10 (2023) category, severity, default title and the two fixed
//! paragraphs of its explanation ("why it matters", "what to do"). A
//! detector decides *whether* a rule fires and says *what happened*; this
//! table says everything else, in one place. (`protocol.rs` keeps its own
//! table for the stream-level indicators, the model this one follows.)

use crate::event::{Owasp, Severity};

/// A detector family: one file of `detect/` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Injection,
    Scanner,
    Authentication,
    Tokens,
    Authorization,
    Exposure,
    Resource,
    Inventory,
}

/// One rule.
#[derive(Debug)]
pub struct Rule {
    pub id: &'static str,
    pub family: Family,
    pub owasp: Owasp,
    pub severity: Severity,
    pub title: &'static str,
    pub why: &'static str,
    pub todo: &'static str,
}

/// Names every rule: a detector refers to its rule by this, never by text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleId {
    InjectionSql,
    InjectionNoSql,
    InjectionCommand,
    InjectionPathTraversal,
    InjectionXss,
    InjectionSsrf,
    ScannerToolUserAgent,
    ScannerNotFoundBurst,
    CredentialStuffing,
    BruteForce,
    PasswordSpraying,
    MissingAuthAccepted,
    UnauthenticatedProbing,
    JwtAlgNoneAccepted,
    JwtExpiredAccepted,
    JwtWeakSecret,
    JwtForgedAccepted,
    JwtForgeryAttempts,
    BolaEnumeration,
    BolaForeignObject,
    SelfServiceOtherPrincipal,
    FunctionLevel,
    MassAssignment,
    UnusualSensitiveData,
    SensitiveVolume,
    DataVolume,
    VerboseError,
    RateAbuse,
    PageSizeAbuse,
    OversizedResponse,
    UnknownHost,
    ShadowApi,
    DeprecatedApi,
}

use Family as F;
use Owasp as O;
use Severity as S;

impl RuleId {
    pub const ALL: [RuleId; 33] = [
        RuleId::InjectionSql,
        RuleId::InjectionNoSql,
        RuleId::InjectionCommand,
        RuleId::InjectionPathTraversal,
        RuleId::InjectionXss,
        RuleId::InjectionSsrf,
        RuleId::ScannerToolUserAgent,
        RuleId::ScannerNotFoundBurst,
        RuleId::CredentialStuffing,
        RuleId::BruteForce,
        RuleId::PasswordSpraying,
        RuleId::MissingAuthAccepted,
        RuleId::UnauthenticatedProbing,
        RuleId::JwtAlgNoneAccepted,
        RuleId::JwtExpiredAccepted,
        RuleId::JwtWeakSecret,
        RuleId::JwtForgedAccepted,
        RuleId::JwtForgeryAttempts,
        RuleId::BolaEnumeration,
        RuleId::BolaForeignObject,
        RuleId::SelfServiceOtherPrincipal,
        RuleId::FunctionLevel,
        RuleId::MassAssignment,
        RuleId::UnusualSensitiveData,
        RuleId::SensitiveVolume,
        RuleId::DataVolume,
        RuleId::VerboseError,
        RuleId::RateAbuse,
        RuleId::PageSizeAbuse,
        RuleId::OversizedResponse,
        RuleId::UnknownHost,
        RuleId::ShadowApi,
        RuleId::DeprecatedApi,
    ];

    /// The rule's row of the table.
    pub fn rule(self) -> &'static Rule {
        macro_rules! rule {
            ($id:expr, $family:expr, $owasp:expr, $sev:expr, $title:expr, $why:expr, $todo:expr) => {{
                static R: Rule = Rule {
                    id: $id,
                    family: $family,
                    owasp: $owasp,
                    severity: $sev,
                    title: $title,
                    why: $why,
                    todo: $todo,
                };
                &R
            }};
        }
        match self {
            RuleId::InjectionSql => rule!("detect.injection.sql", F::Injection, O::SecurityMisconfiguration, S::High, "SQL injection payload",
                "SQL injection payloads are how attackers read or change a database through an API; a 2xx answer or an unusual response size can mean the probe worked.",
                "Check the server logs and the response for signs the payload was executed; parameterise the queries this input reaches; block or rate-limit the source if the probing continues."),
            RuleId::InjectionNoSql => rule!("detect.injection.nosql", F::Injection, O::SecurityMisconfiguration, S::High, "NoSQL injection payload",
                "Operator injection (`$ne`, `$gt`, `$where`) turns a lookup into a query that matches everything, bypassing logins and filters.",
                "Reject objects where the API expects strings; check whether the query returned more than it should; block the source if the probing continues."),
            RuleId::InjectionCommand => rule!("detect.injection.command", F::Injection, O::SecurityMisconfiguration, S::High, "OS command injection payload",
                "A shell command reaching the server's operating system gives the attacker the machine.",
                "Never pass client input to a shell; check the server for signs of the command having run; block the source."),
            RuleId::InjectionPathTraversal => rule!("detect.injection.path_traversal", F::Injection, O::SecurityMisconfiguration, S::High, "Path traversal payload",
                "Walking out of a directory with `../` reads configuration files, keys and other users' files.",
                "Resolve file names against an allow-list or a fixed root; check whether a file outside it was returned; block the source."),
            RuleId::InjectionXss => rule!("detect.injection.xss", F::Injection, O::SecurityMisconfiguration, S::Medium, "Cross-site scripting payload",
                "Script stored or reflected by an API runs in its users' browsers with their sessions.",
                "Encode output for its context and validate input; check whether the payload was stored; block the source if the probing continues."),
            RuleId::InjectionSsrf => rule!("detect.injection.ssrf", F::Injection, O::ServerSideRequestForgery, S::High, "Server-side request forgery target",
                "Making the server fetch internal addresses (cloud metadata, loopback, files) exposes credentials and internal services.",
                "Allow-list the hosts the server may fetch and block link-local, loopback and file URLs; check what the server fetched."),
            RuleId::ScannerToolUserAgent => rule!("detect.scanner.tool_user_agent", F::Scanner, O::SecurityMisconfiguration, S::Medium, "Attack tool in use",
                "Automated attack tools map an API and try known exploits quickly; they often precede a targeted attack.",
                "Confirm whether this is an authorised test; if not, block the source and review what it reached."),
            RuleId::ScannerNotFoundBurst => rule!("detect.scanner.not_found_burst", F::Scanner, O::SecurityMisconfiguration, S::Medium, "Burst of requests for paths that do not exist",
                "Guessing paths at this rate is how scanners find forgotten admin pages, debug endpoints and backups.",
                "Block or rate-limit the source; make sure nothing it found (any 2xx among its requests) should be reachable."),
            RuleId::CredentialStuffing => rule!("detect.auth.credential_stuffing", F::Authentication, O::BrokenAuthentication, S::High, "Credential stuffing: failed logins across many accounts",
                "Trying many accounts with leaked username/password pairs is how attackers take over accounts whose passwords were reused elsewhere.",
                "Block or challenge the source (CAPTCHA, rate limit), check whether any of its attempts succeeded, and force a password reset for those accounts."),
            RuleId::BruteForce => rule!("detect.auth.brute_force", F::Authentication, O::BrokenAuthentication, S::High, "Password brute force on one account",
                "Repeated guesses against one account will eventually find a weak password.",
                "Lock or throttle the account after a few failures, alert its owner, and block the source."),
            RuleId::PasswordSpraying => rule!("detect.auth.password_spraying", F::Authentication, O::BrokenAuthentication, S::High, "Password spraying: one password tried on many accounts from several addresses",
                "Spreading one common password over many accounts and addresses stays under per-account lockouts and per-address limits.",
                "Block the listed addresses, require MFA, and check for successful logins from them."),
            RuleId::MissingAuthAccepted => rule!("detect.auth.missing_auth_accepted", F::Authentication, O::BrokenAuthentication, S::High, "Endpoint that requires credentials answered without them",
                "An endpoint that requires credentials but also serves requests without them is missing its authentication check.",
                "Enforce authentication on this endpoint for every method and path variant; review what was served to unauthenticated callers."),
            RuleId::UnauthenticatedProbing => rule!("detect.auth.unauthenticated_probing", F::Authentication, O::BrokenAuthentication, S::Medium, "Client probed endpoints that require credentials without any",
                "Calling many protected endpoints without credentials is how attackers look for the one whose authentication check is missing.",
                "Check that every endpoint this client reached refuses unauthenticated calls; block the client if it is not a known monitor."),
            RuleId::JwtAlgNoneAccepted => rule!("detect.jwt.alg_none_accepted", F::Tokens, O::BrokenAuthentication, S::Critical, "Unsigned JWT (alg: none) accepted",
                "An API that accepts unsigned tokens lets anyone claim to be any user, including administrators.",
                "Configure the JWT library to accept only the expected algorithm (e.g. HS256 or RS256) and reject `none`; review every request made with unsigned tokens."),
            RuleId::JwtExpiredAccepted => rule!("detect.jwt.expired_accepted", F::Tokens, O::BrokenAuthentication, S::High, "Expired JWT accepted",
                "Expiry limits how long a stolen token is useful; an API that ignores it accepts stolen tokens forever.",
                "Make the API validate `exp` (and `nbf`) on every request; shorten token lifetimes and revoke the affected sessions."),
            RuleId::JwtWeakSecret => rule!("detect.jwt.weak_secret", F::Tokens, O::BrokenAuthentication, S::Critical, "JWT signed with a guessable secret accepted",
                "Anyone who guesses the signing secret can mint valid tokens for any user and role.",
                "Rotate the signing key to a long random secret (or move to an asymmetric algorithm) and invalidate all tokens signed with the old one."),
            RuleId::JwtForgedAccepted => rule!("detect.jwt.forged_token_accepted", F::Tokens, O::BrokenAuthentication, S::High, "Token unlike any the API issues was accepted",
                "A token that did not come from the API's login flow (another algorithm, claims or lifetime than the ones it hands out) and is still accepted means tokens can be forged or come from a leaked key.",
                "Check where this token came from (signing key leaks, other issuers, weak keys); rotate the key and revoke the token if it is not legitimate."),
            RuleId::JwtForgeryAttempts => rule!("detect.jwt.forgery_attempts", F::Tokens, O::BrokenAuthentication, S::Medium, "Forged tokens tried against the API",
                "Unsigned tokens, tokens signed with a guessable key or with claims the API never issues are attempts to forge an identity, even when they are refused.",
                "Block the source; make sure the API rejects every such token (algorithm allow-list, strong keys) and that none was accepted."),
            RuleId::BolaEnumeration => rule!("detect.authz.bola_enumeration", F::Authorization, O::BrokenObjectLevelAuthorization, S::High, "Client walked far more objects than other clients",
                "Walking object ids is how attackers harvest other users' data when the API does not check who owns an object.",
                "Verify the API checks object ownership on this endpoint; review which objects this actor received and block it."),
            RuleId::BolaForeignObject => rule!("detect.authz.bola_foreign_object", F::Authorization, O::BrokenObjectLevelAuthorization, S::High, "Principal accessed objects that belong to other principals",
                "Reading or changing another user's objects is the most common API flaw (broken object-level authorization).",
                "Check ownership of the object on every request to this endpoint; review the objects this principal reached."),
            RuleId::SelfServiceOtherPrincipal => rule!("detect.authz.self_service_other_principal", F::Authorization, O::BrokenObjectLevelAuthorization, S::High, "Self-service endpoint used on another principal's account",
                "Callers of this endpoint name themselves in its path; a principal naming another user reads or changes that user's account.",
                "Make the endpoint act on the authenticated principal (or check that the named account is the caller's); review what was read or changed."),
            RuleId::FunctionLevel => rule!("detect.authz.function_level", F::Authorization, O::BrokenFunctionLevelAuthorization, S::High, "Non-privileged principal used an administrative function",
                "Administrative functions that do not check the caller's role let any user act as an administrator.",
                "Check the caller's role on the server for this function; review what this principal did with it."),
            RuleId::MassAssignment => rule!("detect.authz.mass_assignment", F::Authorization, O::BrokenObjectPropertyLevelAuthorization, S::High, "Request set privileged properties and was accepted",
                "APIs that bind every request property to the stored object let clients grant themselves roles or change fields they must not.",
                "Allow-list the properties clients may set on this endpoint; check whether the privileged properties were stored."),
            RuleId::UnusualSensitiveData => rule!("detect.exposure.unusual_sensitive_data", F::Exposure, O::BrokenObjectPropertyLevelAuthorization, S::High, "Response carried sensitive data this endpoint does not normally return",
                "A response that suddenly carries new kinds of personal or secret data usually means an authorization or serialization flaw is exposing more than intended.",
                "Check which code path produced this response and filter the fields it returns to what the client needs."),
            RuleId::SensitiveVolume => rule!("detect.exposure.sensitive_volume", F::Exposure, O::BrokenObjectPropertyLevelAuthorization, S::High, "Client received far more sensitive records than any other",
                "Bulk access to personal or secret data is how breaches through APIs happen, even when each single response looks legitimate.",
                "Find which endpoint returns this data in bulk, restrict it to what clients need, and review this client's access."),
            RuleId::DataVolume => rule!("detect.exposure.data_volume", F::Exposure, O::BrokenObjectPropertyLevelAuthorization, S::High, "Client downloaded far more data than any other",
                "Pulling a whole collection again and again in a short time is how data leaves through an API with a stolen credential, even when each answer is allowed.",
                "Check whose credential this is and where it was used from; limit how much one client may fetch per minute, and rotate the credential if it leaked."),
            RuleId::VerboseError => rule!("detect.exposure.verbose_error", F::Exposure, O::SecurityMisconfiguration, S::Medium, "Response exposes a stack trace or internal error",
                "Stack traces and database errors reveal code paths, file names, versions and queries that help attackers aim their next request.",
                "Return generic error messages to clients and log the details on the server only."),
            RuleId::RateAbuse => rule!("detect.resource.rate_abuse", F::Resource, O::UnrestrictedResourceConsumption, S::Medium, "Request rate far above every other client",
                "Request floods from one client scrape data, brute-force identifiers and exhaust the API for everyone else.",
                "Rate-limit per client and per principal; check what this client collected."),
            RuleId::PageSizeAbuse => rule!("detect.resource.page_size_abuse", F::Resource, O::UnrestrictedResourceConsumption, S::Medium, "Page size far above normal",
                "Unbounded page sizes let one request pull whole tables, exhausting the server and exfiltrating data in bulk.",
                "Cap the page size on the server and reject larger values."),
            RuleId::OversizedResponse => rule!("detect.resource.oversized_response", F::Resource, O::UnrestrictedResourceConsumption, S::Medium, "Response far larger than this endpoint returns",
                "An unusually large answer is how bulk data leaves an API in one request (missing limits, injected filters, broken pagination).",
                "Check what this response contained and cap the amount of data one request can return."),
            RuleId::UnknownHost => rule!("detect.inventory.unknown_host", F::Inventory, O::ImproperInventoryManagement, S::Medium, "API answered for a host it was not known to serve",
                "Servers that answer any Host name expose staging or internal virtual hosts and enable host-header attacks.",
                "Configure the server to reject unknown Host names; inventory the virtual hosts it really serves."),
            RuleId::ShadowApi => rule!("detect.inventory.shadow_api", F::Inventory, O::ImproperInventoryManagement, S::Medium, "Call to an endpoint the API specification does not list",
                "Endpoints outside the documented API (shadow APIs) escape review, testing and monitoring.",
                "Document the endpoint and review its security, or remove it."),
            RuleId::DeprecatedApi => rule!("detect.inventory.deprecated_api", F::Inventory, O::ImproperInventoryManagement, S::Low, "Call to an endpoint the API specification marks deprecated",
                "Deprecated (zombie) endpoints stay reachable after their replacements shipped and often lack newer security fixes.",
                "Move the remaining clients to the replacement and switch the deprecated endpoint off."),
        }
    }

    pub fn id(self) -> &'static str {
        self.rule().id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_named_for_their_family() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RuleId::ALL {
            let rule = r.rule();
            assert!(seen.insert(rule.id), "{} twice", rule.id);
            let prefix = match rule.family {
                Family::Injection => "detect.injection.",
                Family::Scanner => "detect.scanner.",
                Family::Authentication => "detect.auth.",
                Family::Tokens => "detect.jwt.",
                Family::Authorization => "detect.authz.",
                Family::Exposure => "detect.exposure.",
                Family::Resource => "detect.resource.",
                Family::Inventory => "detect.inventory.",
            };
            assert!(rule.id.starts_with(prefix), "{}", rule.id);
            assert!(!rule.why.is_empty() && !rule.todo.is_empty() && !rule.title.is_empty());
        }
    }
}
