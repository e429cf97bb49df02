//! The API as its OpenAPI document says, checked by validators someone else wrote: the real
//! engine's `/api/v1/openapi.json` must be a valid OpenAPI document (openapi-spec-validator),
//! and every answer of a round of real requests (each endpoint, each credential kind, the
//! errors: 400, 401, 403, 412, 415) must be one the document describes, with a request
//! answered 2xx one it accepts (openapi-core). The validators live in a venv that
//! scripts/bootstrap.sh fills from PyPI at pinned versions.

use super::*;
use serde_json::{json, Value};

/// The venv's Python, with openapi-spec-validator and openapi-core.
fn validators() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/openapi/bin/python");
    assert!(
        python.exists(),
        "the OpenAPI validators are missing: run scripts/bootstrap.sh"
    );
    python
}

/// One request and the engine's answer, as the checker reads them.
struct Exchange {
    status: u16,
    headers: String,
    body: String,
}

/// Makes requests with curl and keeps each exchange.
struct Client {
    base: String,
    seen: Vec<Value>,
}

impl Client {
    /// `method path` with `headers` and an optional body; the answer is recorded.
    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Exchange {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time", "10", "-D", "-", "-X", method])
            .arg(format!("{}{path}", self.base));
        for (name, value) in headers {
            command.args(["-H", &format!("{name}: {value}")]);
        }
        if let Some(body) = body {
            command.args(["--data-binary", body]);
        }
        let out = command
            .output()
            .expect("curl is missing (bootstrap installs it)");
        assert!(
            out.status.success(),
            "{method} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
        let (head, body_text) = text.split_once("\n\n").unwrap_or((&text, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let content_type = header_in(head, "content-type").unwrap_or_default();
        let record = json!({
            "method": method,
            "path": path,
            "headers": headers.iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "request_body": body,
            "status": status,
            "content_type": content_type,
            "body": body_text,
        });
        self.seen.push(record);
        Exchange {
            status,
            headers: head.to_string(),
            body: body_text.to_string(),
        }
    }

    fn json(&mut self, method: &str, path: &str, auth: &str, body: Option<Value>) -> Exchange {
        let body = body.map(|b| b.to_string());
        let mut headers = vec![("Authorization", auth)];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        self.send(method, path, &headers, body.as_deref())
    }
}

/// The value of header `name` (any case) in a response head.
fn header_in(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A token printed by `starcode token create`.
fn token_from(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("sc_"))
        .unwrap_or_else(|| panic!("no token in {}", String::from_utf8_lossy(&out.stdout)))
        .to_string()
}

#[test]
fn every_answer_is_one_the_openapi_document_describes() {
    let python = validators();
    let mut engine = Engine::start("");
    let base = engine.web_url();
    manage(
        &engine,
        "admin",
        &["add", "ops", "--password-stdin"],
        "ops-pass-1234\n",
    );
    for (ext, name) in [
        ("1001", "Ann Lee"),
        ("1003", "Cy Twombly"),
        ("1004", "Di Arbus"),
    ] {
        ext_add(&engine, ext, name);
    }
    let admin = format!(
        "Bearer {}",
        token_from(&manage(
            &engine,
            "token",
            &["create", "--name", "qa", "--admin"],
            ""
        ))
    );
    let own = format!(
        "Bearer {}",
        token_from(&manage(
            &engine,
            "token",
            &["create", "--name", "desk", "--extension", "1003"],
            ""
        ))
    );
    // A phone watches 1001, so its watchers list has an entry.
    let engine_addr: std::net::SocketAddr = format!("127.0.0.1:{}", engine.port).parse().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = phone.local_addr().unwrap();
        let request = peer::subscribe(local, engine_addr, "1001", "2001", "openapi-w");
        let answer = peer::transact(&phone, engine_addr, &request).await.unwrap();
        assert!(
            answer.starts_with(b"SIP/2.0 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    });

    let mut c = Client {
        base,
        seen: Vec::new(),
    };
    let spec = c.send("GET", "/api/v1/openapi.json", &[], None);
    assert_eq!(spec.status, 200);
    let spec_file = engine.dir.path().join("openapi.json");
    std::fs::write(&spec_file, &spec.body).unwrap();
    c.seen.clear(); // the document itself is checked as a document, below

    // The board, filtered and paged, and its errors.
    assert_eq!(
        c.json("GET", "/api/v1/extensions", &admin, None).status,
        200
    );
    assert_eq!(
        c.json(
            "GET",
            "/api/v1/extensions?status=dnd&search=10&offset=0&limit=2",
            &own,
            None
        )
        .status,
        200
    );
    assert_eq!(
        c.json("GET", "/api/v1/extensions?limit=lots", &admin, None)
            .status,
        400
    );
    assert_eq!(c.send("GET", "/api/v1/extensions", &[], None).status, 401);
    // Presence: set, read, conditional, refused.
    let set = c.json(
        "PUT",
        "/api/v1/extensions/1001/presence",
        &admin,
        Some(json!({"status": "dnd"})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let etag = header_in(&set.headers, "etag").expect("an ETag");
    let custom = json!({"status": "custom", "text": "In the lab · back at 3"});
    assert_eq!(
        c.json(
            "PUT",
            "/api/v1/extensions/1003/presence",
            &own,
            Some(custom)
        )
        .status,
        200
    );
    let mut lost = c.send(
        "PUT",
        "/api/v1/extensions/1001/presence",
        &[
            ("Authorization", &admin),
            ("Content-Type", "application/json"),
            ("If-Match", "\"0\""),
        ],
        Some(r#"{"status":"away"}"#),
    );
    assert_eq!(lost.status, 412, "{}", lost.body);
    lost = c.send(
        "PUT",
        "/api/v1/extensions/1001/presence",
        &[
            ("Authorization", &admin),
            ("Content-Type", "application/json"),
            ("If-Match", &etag),
        ],
        Some(r#"{"status":"away"}"#),
    );
    assert_eq!(lost.status, 200, "{}", lost.body);
    assert_eq!(
        c.json(
            "PUT",
            "/api/v1/extensions/1001/presence",
            &admin,
            Some(json!({"status": "asleep"}))
        )
        .status,
        400
    );
    assert_eq!(
        c.send(
            "PUT",
            "/api/v1/extensions/1001/presence",
            &[("Authorization", &admin), ("Content-Type", "text/plain")],
            Some("dnd"),
        )
        .status,
        415
    );
    assert_eq!(
        c.json(
            "PUT",
            "/api/v1/extensions/1004/presence",
            &own,
            Some(json!({"status": "dnd"}))
        )
        .status,
        403
    );
    assert_eq!(
        c.json("GET", "/api/v1/extensions/1001/presence", &own, None)
            .status,
        200
    );
    assert_eq!(
        c.json(
            "GET",
            "/api/v1/extensions/1001/history?limit=5",
            &admin,
            None
        )
        .status,
        200
    );
    let watchers = c.json("GET", "/api/v1/extensions/1001/watchers", &admin, None);
    assert_eq!(watchers.status, 200);
    assert!(watchers.body.contains("2001"), "{}", watchers.body);
    assert_eq!(
        c.json("GET", "/api/v1/extensions/10%2001/presence", &admin, None)
            .status,
        400
    );
    for bad in [
        "/api/v1/extensions/%FF/history",
        "/api/v1/extensions/1001/history?limit=-1",
        "/api/v1/events?last_event_id=soon",
    ] {
        assert_eq!(c.json("GET", bad, &admin, None).status, 400, "{bad}");
    }
    // Feature codes and reload: admins only; a bad code is named.
    let codes = c.json("GET", "/api/v1/feature-codes", &admin, None);
    assert_eq!(codes.status, 200);
    assert_eq!(
        c.json("GET", "/api/v1/feature-codes", &own, None).status,
        403
    );
    let mut edited: Value = serde_json::from_str(&codes.body).unwrap();
    let put = c.json("PUT", "/api/v1/feature-codes", &admin, Some(edited.clone()));
    assert_eq!(put.status, 200, "{}", put.body);
    edited["codes"][0]["code"] = json!("*4A");
    assert_eq!(
        c.json("PUT", "/api/v1/feature-codes", &admin, Some(edited))
            .status,
        400
    );
    assert_eq!(c.json("POST", "/api/v1/reload", &admin, None).status, 200);
    // A browser: sign in, who am I, sign out (only with the CSRF token).
    let form = r#"{"user":"ops","password":"ops-pass-1234"}"#;
    let json_type = ("Content-Type", "application/json");
    assert_eq!(
        c.send(
            "POST",
            "/api/v1/login",
            &[json_type],
            Some(r#"{"user":"ops","password":"nope-nope"}"#)
        )
        .status,
        401
    );
    let login = c.send("POST", "/api/v1/login", &[json_type], Some(form));
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = header_in(&login.headers, "set-cookie").expect("a session cookie");
    let cookie = cookie.split(';').next().unwrap().to_string();
    let csrf = serde_json::from_str::<Value>(&login.body).unwrap()["csrf"]
        .as_str()
        .expect("the CSRF token")
        .to_string();
    assert_eq!(
        c.send("GET", "/api/v1/me", &[("Cookie", &cookie)], None)
            .status,
        200
    );
    assert_eq!(
        c.send("POST", "/api/v1/logout", &[("Cookie", &cookie)], None)
            .status,
        403
    );
    assert_eq!(
        c.send(
            "POST",
            "/api/v1/logout",
            &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
            None
        )
        .status,
        204
    );
    // Guessing a password: refused, then throttled (429 with Retry-After).
    let guess = r#"{"user":"ops","password":"guess-guess"}"#;
    let throttled = (0..12)
        .map(|_| c.send("POST", "/api/v1/login", &[json_type], Some(guess)))
        .find(|answer| answer.status != 401)
        .expect("guessing is throttled within 12 tries");
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    assert!(header_in(&throttled.headers, "retry-after").is_some());

    let lines: String = c.seen.iter().map(|r| format!("{r}\n")).collect();
    let out = output_with_stdin(
        Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/openapi_check.py"))
            .arg(&spec_file),
        &lines,
    );
    assert!(
        out.status.success(),
        "not as the OpenAPI document says:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Adds an extension's account (no SIP secret: only the board needs it).
fn ext_add(engine: &Engine, ext: &str, name: &str) {
    manage(engine, "ext", &["add", ext, "--name", name], "");
}
