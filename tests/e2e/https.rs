//! HTTPS end to end: the real engine with `http.tls_cert` / `http.tls_key` (a certificate for
//! 127.0.0.1 and localhost, signed by a test CA made with rcgen), read by curl trusting only
//! that CA. The API and pages are served over TLS only, the session cookie is `Secure`, and a
//! config with half of the pair or a garbage certificate does not start, naming the key.

use super::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A CA and a server certificate for 127.0.0.1 and localhost it signed, as PEM files in `dir`:
/// (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: a leaf whose issuer is its own subject reads as self-signed.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "starcode test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "starcode test server");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// The config in `dir` with `lines` added to its `[http]` section.
fn with_http(dir: &Path, lines: &str) {
    let path = dir.join("starcode.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    let http = "[http]\nlisten = \"127.0.0.1:0\"\n";
    assert!(config.contains(http), "{config}");
    std::fs::write(&path, config.replace(http, &format!("{http}{lines}"))).unwrap();
}

/// `curl` with `args`, bounded to 10 s; its output (status line, headers and body with `-i`).
fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs (scripts/bootstrap.sh installs it)")
}

/// The HTTP status code of a GET of `url` trusting the CA in `ca` (curl's error if none).
fn status_code(ca: &str, url: &str) -> String {
    let out = curl(&["--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}", url]);
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    if code == "000" {
        return format!("000 {}", String::from_utf8_lossy(&out.stderr));
    }
    code
}

/// The value of the `Set-Cookie` header of a `curl -i` answer.
fn set_cookie(answer: &str) -> Option<String> {
    answer.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("set-cookie")
            .then(|| value.trim().to_string())
    })
}

#[test]
fn api_and_pages_over_tls_with_secure_cookies() {
    let (dir, port) = Engine::configure("127.0.0.1", "");
    let (ca, cert, key) = certificates(dir.path());
    with_http(
        dir.path(),
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let mut engine = Engine::spawn(dir, port, "127.0.0.1");
    let url = engine.web_url();
    assert!(url.starts_with("https://127.0.0.1:"), "logged url: {url}");
    let ca = ca.to_string_lossy().into_owned();

    // /healthz over TLS, the certificate checked against the test CA only.
    assert_eq!(status_code(&ca, &format!("{url}/healthz")), "200");
    // A page too (the board, or the way to the sign-in page).
    let page = status_code(&ca, &format!("{url}/"));
    assert!(
        page.starts_with('2') || page.starts_with('3'),
        "GET / over TLS: {page}"
    );
    // The name localhost is in the certificate too.
    let by_name = url.replace("127.0.0.1", "localhost");
    assert_eq!(status_code(&ca, &format!("{by_name}/healthz")), "200");
    // Without the CA the certificate is not trusted: TLS really is in the way.
    let untrusted = curl(&["-o", "/dev/null", &format!("{url}/healthz")]);
    assert!(!untrusted.status.success(), "an unknown CA was accepted");
    // Plain HTTP to the same port gets no HTTP answer.
    let plain = url.replacen("https://", "http://", 1);
    let plain = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{plain}/healthz"),
    ]);
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    assert!(
        !plain.status.success(),
        "plain HTTP answered on the TLS port"
    );

    // A login over TLS: the session cookie is Secure, HttpOnly and SameSite=Strict.
    manage(
        &engine,
        "admin",
        &["add", "ops", "--password-stdin"],
        "ops-pass-1234\n",
    );
    let login = curl(&[
        "--cacert",
        &ca,
        "-i",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"user":"ops","password":"ops-pass-1234"}"#,
        &format!("{url}/api/v1/login"),
    ]);
    let answer = String::from_utf8_lossy(&login.stdout);
    assert!(
        answer.starts_with("HTTP/") && answer.lines().next().is_some_and(|l| l.contains(" 200")),
        "{answer}"
    );
    let cookie = set_cookie(&answer).unwrap_or_else(|| panic!("no Set-Cookie in {answer}"));
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(
            cookie.split(';').any(|a| a.trim() == attribute),
            "{attribute} missing: {cookie}"
        );
    }
    let session = cookie.split(';').next().unwrap_or_default().to_string();

    // The cookie signs in GET /api/v1/me.
    let me = curl(&[
        "--cacert",
        &ca,
        "-H",
        &format!("Cookie: {session}"),
        "-w",
        "\n%{http_code}",
        &format!("{url}/api/v1/me"),
    ]);
    let me = String::from_utf8_lossy(&me.stdout);
    let (body, code) = me.rsplit_once('\n').unwrap_or_default();
    assert_eq!(code, "200", "{me}");
    let who: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(who["principal"]["name"], "ops", "{who}");
}

/// Starts the engine on `config` and expects it to fail at start-up within 20 s; its stderr.
fn failed_start(dir: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_starcode"))
        .args(["run", "--config"])
        .arg(dir.join("starcode.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the engine started with a broken TLS config");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn half_a_tls_pair_or_a_garbage_certificate_is_a_start_up_error_naming_the_key() {
    let (dir, _) = Engine::configure("127.0.0.1", "");
    let (_, cert, key) = certificates(dir.path());
    let base = std::fs::read_to_string(dir.path().join("starcode.toml")).unwrap();
    let restore = || std::fs::write(dir.path().join("starcode.toml"), &base).unwrap();

    with_http(dir.path(), &format!("tls_cert = \"{}\"\n", cert.display()));
    let err = failed_start(dir.path());
    assert!(err.contains("http.tls_key"), "{err}");

    restore();
    with_http(dir.path(), &format!("tls_key = \"{}\"\n", key.display()));
    let err = failed_start(dir.path());
    assert!(err.contains("http.tls_cert"), "{err}");

    restore();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    with_http(
        dir.path(),
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            garbage.display(),
            key.display()
        ),
    );
    let err = failed_start(dir.path());
    assert!(err.contains("http.tls_cert"), "{err}");

    restore();
    let missing = dir.path().join("missing.pem");
    with_http(
        dir.path(),
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            missing.display()
        ),
    );
    let err = failed_start(dir.path());
    assert!(
        err.contains("http.tls_key") && err.contains("missing.pem"),
        "{err}"
    );
}
