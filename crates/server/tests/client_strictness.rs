//! The rules of ews-contract.md §5.2 — what the EWS Managed API and ews-java-api parsers require,
//! stricter than the schema — one test per rule, checked on real server output.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

extern crate openum_server as server;

mod support;

use calls::{CallState, Cause};
use ews_proto::{ns, ResponseCode};
use support::*;
use testkit::{outline, Node};

/// A spread of replies: successes of all three operations, per-message errors, and faults.
async fn sample_replies(server: &TestServer) -> Vec<Reply> {
    let item = server.add_item("alice", true).await;
    server
        .add_call("c1", "alice", CallState::Connected, Cause::None)
        .await;
    let mut out = Vec::new();
    for body in [
        play(&item, "5551212"),
        get_info("c1"),
        disconnect("c1"),
        play("", "1"),
        get_info("nope"),
        disconnect("nope"),
        "<broken".to_owned(),
        envelope(Some("Exchange2010"), "<m:PlayOnPhone/>"),
    ] {
        out.push(server.ews(body).await);
    }
    out
}

fn elements_under_body(nodes: &[Node]) -> Vec<&Node> {
    let body = nodes.iter().position(|n| n.local == "Body").unwrap();
    nodes[body + 1..].iter().collect()
}

async fn rule_1_every_reply_starts_with_the_xml_declaration(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    for reply in sample_replies(&server).await {
        assert!(
            reply
                .body
                .starts_with(r#"<?xml version="1.0" encoding="utf-8"?>"#),
            "{}",
            reply.body
        );
    }
    server.stop().await;
}

async fn rule_2_responses_carry_a_non_self_closing_header_with_server_version_info(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    for reply in sample_replies(&server)
        .await
        .iter()
        .filter(|r| r.status == 200)
    {
        let nodes = outline(&reply.body);
        let header = nodes
            .iter()
            .find(|n| n.local == "Header")
            .expect("s:Header");
        assert_eq!((header.ns.as_str(), header.depth), (ns::SOAP, 1));
        assert!(!header.self_closing, "{}", reply.body);
        assert!(!reply.body.contains("<s:Header/>"));
        let svi = &nodes[nodes.iter().position(|n| n.local == "Header").unwrap() + 1];
        assert_eq!(
            (svi.ns.as_str(), svi.local.as_str()),
            (ns::TYPES, "ServerVersionInfo")
        );
    }
    server.stop().await;
}

async fn rule_3_server_version_info_has_four_integers_and_a_version(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    let reply = server.ews(get_info("x")).await;
    let nodes = outline(&reply.body);
    let svi = nodes
        .iter()
        .find(|n| n.local == "ServerVersionInfo")
        .unwrap();
    for attr in [
        "MajorVersion",
        "MinorVersion",
        "MajorBuildNumber",
        "MinorBuildNumber",
    ] {
        let value = svi.attr(attr).unwrap_or_else(|| panic!("{attr} missing"));
        value
            .parse::<i32>()
            .unwrap_or_else(|_| panic!("{attr}={value} is not an int"));
    }
    // decisions §3 defaults.
    assert_eq!(svi.attr("MajorVersion"), Some("15"));
    assert_eq!(svi.attr("MinorVersion"), Some("1"));
    assert_eq!(svi.attr("MajorBuildNumber"), Some("2507"));
    assert_eq!(svi.attr("MinorBuildNumber"), Some("6"));
    assert_eq!(svi.attr("Version"), Some("V2017_07_11"));
    server.stop().await;
}

async fn rule_4_header_then_body_then_exactly_one_response_element(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    for reply in sample_replies(&server)
        .await
        .iter()
        .filter(|r| r.status == 200)
    {
        let nodes = outline(&reply.body);
        let top: Vec<&str> = nodes
            .iter()
            .filter(|n| n.depth <= 1)
            .map(|n| n.local.as_str())
            .collect();
        assert_eq!(top, ["Envelope", "Header", "Body"]);
        let in_body: Vec<&Node> = nodes.iter().filter(|n| n.depth == 2).collect();
        // depth 2 holds ServerVersionInfo (in Header) and the response (in Body).
        assert_eq!(in_body.len(), 2, "{}", reply.body);
        let response = in_body[1];
        assert_eq!(response.ns, ns::MESSAGES);
        assert!(response.local.ends_with("Response"));
    }
    server.stop().await;
}

async fn rule_5_response_class_is_always_success_or_error(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    for reply in sample_replies(&server)
        .await
        .iter()
        .filter(|r| r.status == 200)
    {
        let nodes = outline(&reply.body);
        let response = elements_under_body(&nodes)[0];
        let class = response.attr("ResponseClass").expect("ResponseClass");
        assert!(class == "Success" || class == "Error", "{class}");
    }
    server.stop().await;
}

async fn rule_6_success_starts_with_response_code_then_the_required_payload(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    let replies = sample_replies(&server).await;
    let expected_payload = [Some("PhoneCallId"), Some("PhoneCallInformation"), None];
    for (reply, payload) in replies[..3].iter().zip(expected_payload) {
        let nodes = outline(&reply.body);
        let under = elements_under_body(&nodes);
        let children: Vec<&Node> = under.iter().copied().filter(|n| n.depth == 3).collect();
        assert_eq!(children[0].local, "ResponseCode", "{}", reply.body);
        assert_eq!(children[0].text, "NoError");
        match payload {
            Some(name) => {
                assert_eq!(children.len(), 2, "{}", reply.body);
                assert_eq!(
                    (children[1].ns.as_str(), children[1].local.as_str()),
                    (ns::MESSAGES, name)
                );
                if name == "PhoneCallId" {
                    assert!(!children[1].attr("Id").unwrap().is_empty());
                }
            }
            None => assert_eq!(children.len(), 1, "{}", reply.body),
        }
    }
    server.stop().await;
}

async fn rule_7_errors_have_message_text_code_and_link_key_zero_in_order(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    let replies = sample_replies(&server).await;
    for reply in &replies[3..6] {
        let nodes = outline(&reply.body);
        let under = elements_under_body(&nodes);
        assert_eq!(under[0].attr("ResponseClass"), Some("Error"));
        let children: Vec<(&str, &str)> = under
            .iter()
            .filter(|n| n.depth == 3)
            .map(|n| (n.local.as_str(), n.text.as_str()))
            .collect();
        assert_eq!(children.len(), 3, "{}", reply.body);
        assert_eq!(children[0].0, "MessageText");
        assert!(!children[0].1.is_empty());
        assert_eq!(children[1].0, "ResponseCode");
        assert_eq!(children[2], ("DescriptiveLinkKey", "0"));
    }
    server.stop().await;
}

async fn rule_8_phone_call_information_children_are_types_elements_in_schema_order(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    server
        .add_call("busy", "alice", CallState::Disconnected, Cause::UserBusy)
        .await;
    let mut r = server::store::Store::call(&server.sqlite, "busy")
        .await
        .unwrap()
        .unwrap();
    r.sip_code = Some(486);
    r.sip_text = Some("Busy Here".into());
    r.ended_at = Some(now());
    server::store::Store::update_call(&server.sqlite, &r)
        .await
        .unwrap();
    let reply = server.ews(get_info("busy")).await;
    let nodes = outline(&reply.body);
    let info = nodes
        .iter()
        .position(|n| n.local == "PhoneCallInformation")
        .unwrap();
    let children: Vec<&Node> = nodes[info + 1..].iter().filter(|n| n.depth == 4).collect();
    let names: Vec<(&str, &str, &str)> = children
        .iter()
        .map(|n| (n.ns.as_str(), n.local.as_str(), n.text.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (ns::TYPES, "PhoneCallState", "Disconnected"),
            (ns::TYPES, "ConnectionFailureCause", "UserBusy"),
            (ns::TYPES, "SIPResponseText", "Busy Here"),
            (ns::TYPES, "SIPResponseCode", "486"),
        ]
    );
    server.stop().await;
}

async fn rule_9_every_response_code_sent_is_a_member_of_the_enumeration(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    for reply in sample_replies(&server).await {
        for node in outline(&reply.body)
            .iter()
            .filter(|n| n.local == "ResponseCode")
        {
            assert!(
                ResponseCode::from_wire(&node.text).is_some(),
                "{} is not a schema ResponseCode",
                node.text
            );
        }
    }
    server.stop().await;
}

async fn rule_10_errors_are_200_faults_are_500_with_an_unqualified_open_detail(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    for reply in sample_replies(&server).await {
        let nodes = outline(&reply.body);
        if let Some(fault) = nodes.iter().find(|n| n.local == "Fault") {
            assert_eq!(reply.status, 500);
            assert_eq!(fault.ns, ns::SOAP);
            let detail = nodes.iter().find(|n| n.local == "detail").expect("detail");
            assert_eq!(detail.ns, "", "detail must be unqualified");
            assert!(!detail.self_closing);
            let code = nodes.iter().find(|n| n.local == "faultcode").unwrap();
            assert_eq!(code.ns, "");
            assert!(code.text.starts_with("a:Error"), "{}", code.text);
            assert!(reply.body.contains(&format!(r#"xmlns:a="{}""#, ns::TYPES)));
            let faultstring = nodes.iter().find(|n| n.local == "faultstring").unwrap();
            assert!(reply.body.contains(r#"<faultstring xml:lang="en-US">"#));
            assert!(!faultstring.text.is_empty());
            for name in ["ResponseCode", "Message"] {
                let n = nodes.iter().find(|n| n.local == name).unwrap();
                assert_eq!((n.ns.as_str(), n.depth), (ns::ERRORS, 4));
            }
        } else {
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }
    server.stop().await;
}

async fn rule_11_content_type_is_text_xml_utf8(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    for reply in sample_replies(&server).await {
        assert_eq!(
            reply.headers["content-type"].to_str().unwrap(),
            "text/xml; charset=utf-8"
        );
    }
    server.stop().await;
}

over_http_and_https!(
    rule_1_every_reply_starts_with_the_xml_declaration,
    rule_2_responses_carry_a_non_self_closing_header_with_server_version_info,
    rule_3_server_version_info_has_four_integers_and_a_version,
    rule_4_header_then_body_then_exactly_one_response_element,
    rule_5_response_class_is_always_success_or_error,
    rule_6_success_starts_with_response_code_then_the_required_payload,
    rule_7_errors_have_message_text_code_and_link_key_zero_in_order,
    rule_8_phone_call_information_children_are_types_elements_in_schema_order,
    rule_9_every_response_code_sent_is_a_member_of_the_enumeration,
    rule_10_errors_are_200_faults_are_500_with_an_unqualified_open_detail,
    rule_11_content_type_is_text_xml_utf8,
);
