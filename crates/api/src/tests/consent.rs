//! Consent through the router: a service asks, the owner decides, receipts
//! verify with the installation's key, the service reads only the
//! consented types of the consenting owner, and each read is audited.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::*;

fn row(owner: &str, seq: u32, name: &str, time_ms: i64) -> tributary_store::Row {
    tributary_store::Row {
        owner: owner.into(),
        device: format!("{owner}-watch"),
        message_id: format!("{:032x}", seq),
        seq,
        name: name.into(),
        unit: None,
        time_ms,
        value: Some(f64::from(seq)),
        text: None,
        bool: None,
        data: None,
        sum: None,
    }
}

impl Api {
    /// Adds a service granted `read` and returns its Basic credentials.
    fn service(&self, name: &str) -> String {
        let token = tributary_accounts::add_service(
            self._dir.path(),
            name,
            tributary_accounts::Grants {
                read: true,
                command: false,
                packs: false,
            },
        )
        .expect("add service");
        self.state
            .inner
            .accounts
            .reload_if_changed()
            .expect("reload accounts");
        STANDARD.encode(format!("{name}:{token}"))
    }

    async fn as_service(
        &self,
        method: Method,
        uri: &str,
        basic: &str,
        body: Option<Value>,
    ) -> Reply {
        self.call_authorized(method, uri, Some(format!("Basic {basic}")), body)
            .await
    }
}

#[tokio::test]
async fn a_service_reads_only_what_the_owner_granted_and_is_audited() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let bob = api.owner("bob").await;
    let study = api.service("study");
    let t0 = 1_767_225_600_000;
    api.store
        .insert(&[
            row("ann", 1, "heart_rate", t0),
            row("ann", 2, "steps", t0 + 1),
            row("bob", 3, "heart_rate", t0 + 2),
        ])
        .await?;
    let range = format!("from={t0}&to={}", t0 + 60_000);

    let asked = api
        .as_service(
            Method::POST,
            "/api/v1/service/consents",
            &study,
            Some(json!({"owner": "ann", "types": ["heart_rate"], "purpose": "dpv:AcademicResearch", "retention_days": 7})),
        )
        .await;
    assert_eq!(
        asked.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&asked.body)
    );
    let id = asked.json()["id"].as_str().ok_or("id")?.to_owned();
    let read = |owner: &'static str| {
        let uri = format!("/api/v1/service/measurements?owner={owner}&{range}");
        let api = &api;
        let study = study.clone();
        async move { api.as_service(Method::GET, &uri, &study, None).await }
    };
    assert_problem(&read("ann").await, StatusCode::FORBIDDEN, "no live consent");

    // Bob cannot see or decide it; ann grants.
    let other = api
        .post(
            &format!("/api/v1/consents/{id}/grant"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_problem(&other, StatusCode::NOT_FOUND, "no consent request");
    let granted = api
        .post(
            &format!("/api/v1/consents/{id}/grant"),
            Some(&ann),
            json!({}),
        )
        .await;
    assert_eq!(granted.status, StatusCode::OK);
    let jws = granted.json()["receipts"][0]["jws"]
        .as_str()
        .ok_or("jws")?
        .to_owned();

    // The receipt verifies with the key the JWKS publishes.
    let key = api.state.inner.receipts.key(&api.store).await?;
    let receipt = key.verify(&jws)?;
    assert_eq!(receipt.pii_principal_id, "ann");
    assert_eq!(receipt.services[0].purposes[0].pii_category, ["heart_rate"]);
    let jwks = api.get("/api/v1/consent/jwks.json", None).await.json();
    assert_eq!(
        jwks["keys"][0]["x"],
        URL_SAFE_NO_PAD.encode(key.public_key())
    );

    let points = read("ann").await;
    assert_eq!(points.status, StatusCode::OK);
    let names: Vec<String> = points
        .json()
        .as_array()
        .ok_or("points")?
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["heart_rate"]);
    assert_problem(&read("bob").await, StatusCode::FORBIDDEN, "no live consent");

    let audit = api.get("/api/v1/audit", Some(&ann)).await.json();
    let entries = audit["entries"].as_array().ok_or("entries")?;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (
            &entries[0]["actor"],
            &entries[0]["channel"],
            &entries[0]["count"],
            &entries[0]["consent_id"]
        ),
        (&json!("study"), &json!("api"), &json!(1), &json!(id))
    );
    assert_eq!(
        api.get("/api/v1/audit", Some(&bob)).await.json()["entries"],
        json!([])
    );

    // Revoked: the next read is refused at once.
    let revoked = api
        .post(
            &format!("/api/v1/consents/{id}/revoke"),
            Some(&ann),
            json!({}),
        )
        .await;
    assert_eq!(revoked.json()["status"], "revoked");
    assert_problem(&read("ann").await, StatusCode::FORBIDDEN, "no live consent");
    assert_problem(
        &api.as_service(
            Method::POST,
            &format!("/api/v1/consents/{id}/grant"),
            &study,
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "only the owner asked decides",
    );
    Ok(())
}
