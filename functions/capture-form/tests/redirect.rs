//! `_redirect` targets: only clean absolute http(s) URLs on the allow-list become a `Location`.

use capture_form::CaptureConfig;

fn config() -> CaptureConfig {
    CaptureConfig::new(
        "",
        "https://www.example.com, http://localhost:8080/",
        "_gotcha",
        "email",
    )
    .unwrap()
}

#[test]
fn an_allowed_target_is_given_back_as_the_parser_writes_it() {
    let c = config();
    assert_eq!(
        c.redirect_target("https://www.example.com/danke?x=1")
            .unwrap(),
        "https://www.example.com/danke?x=1"
    );
    assert_eq!(
        c.redirect_target("http://localhost:8080/thanks page.html")
            .unwrap(),
        "http://localhost:8080/thanks%20page.html",
        "what goes into the header is encoded"
    );
}

#[test]
fn control_characters_are_refused_although_the_parser_would_drop_them() {
    let sneaky = "https://www.example.com/danke\r\nSet-Cookie: a=b";
    // The URL parser strips CR/LF/TAB and would find the origin allowed.
    assert_eq!(
        url::Url::parse(sneaky)
            .unwrap()
            .origin()
            .ascii_serialization(),
        "https://www.example.com"
    );
    let c = config();
    for target in [
        sneaky,
        "https://www.example.com/\tdanke",
        "https://www.example.com/danke\0",
        "https://www.example.com/danke\u{85}",
    ] {
        assert_eq!(
            c.redirect_target(target),
            Err("must not contain control characters"),
            "{target:?}"
        );
    }
}

#[test]
fn other_origins_schemes_and_relative_targets_are_refused() {
    let c = config();
    for target in [
        "https://evil.example/phish",
        "https://www.example.com.evil.example/",
        "http://www.example.com/danke",
        "javascript:alert(1)",
        "/danke",
        "//evil.example/",
        "data:text/html,hi",
    ] {
        assert!(c.redirect_target(target).is_err(), "{target:?}");
    }
}
