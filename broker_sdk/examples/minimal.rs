//! A complete, minimal service broker: one offering, one plan, instances and bindings kept in
//! memory. Run it with `cargo run -p broker_sdk --example minimal` and register it with
//! `cf create-service-broker greeter admin secret http://127.0.0.1:8090`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use broker_sdk::{
    BindError, BindOutcome, BindRequest, Binding, Catalog, CatalogError, DeleteOutcome,
    DeprovisionError, DeprovisionRequest, InstanceResponse, ProvisionError, ProvisionOutcome,
    ProvisionRequest, RequestMeta, ServiceBroker, ServiceOffering, ServicePlan, UnbindError,
    UnbindRequest,
};

/// Hands out greetings as credentials.
#[derive(Default)]
struct Greeter {
    instances: Mutex<HashSet<String>>,
}

impl ServiceBroker for Greeter {
    async fn catalog(&self, _meta: RequestMeta) -> Result<Catalog, CatalogError> {
        Ok(Catalog {
            services: vec![ServiceOffering {
                id: "0f4c7f55-92a4-4b0e-8d43-6d1c9e3c2a10".into(),
                name: "greeter".into(),
                description: "Greetings as a service".into(),
                bindable: true,
                plans: vec![ServicePlan {
                    id: "0f4c7f55-92a4-4b0e-8d43-6d1c9e3c2a11".into(),
                    name: "standard".into(),
                    description: "One greeting per binding".into(),
                    ..ServicePlan::default()
                }],
                ..ServiceOffering::default()
            }],
            ..Catalog::default()
        })
    }

    async fn provision(
        &self,
        request: ProvisionRequest,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        let created = self.lock().insert(request.instance_id);
        let response = InstanceResponse::default();
        Ok(if created {
            ProvisionOutcome::Created(response)
        } else {
            ProvisionOutcome::AlreadyExists(response)
        })
    }

    async fn deprovision(
        &self,
        request: DeprovisionRequest,
    ) -> Result<DeleteOutcome, DeprovisionError> {
        if self.lock().remove(&request.instance_id) {
            Ok(DeleteOutcome::Deleted)
        } else {
            Err(DeprovisionError::Gone)
        }
    }

    async fn bind(&self, request: BindRequest) -> Result<BindOutcome, BindError> {
        if !self.lock().contains(&request.instance_id) {
            return Err(BindError::InstanceNotFound(request.instance_id));
        }
        let mut credentials = serde_json::Map::new();
        credentials.insert("greeting".into(), "hello".into());
        Ok(BindOutcome::Created(Binding {
            credentials: Some(credentials),
            ..Binding::default()
        }))
    }

    async fn unbind(&self, _request: UnbindRequest) -> Result<DeleteOutcome, UnbindError> {
        Ok(DeleteOutcome::Deleted)
    }
}

impl Greeter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.instances
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let broker = Arc::new(Greeter::default());
    let credentials = broker_sdk::Credentials::new("admin", "secret");
    eprintln!("greeter broker on http://127.0.0.1:8090 (user admin, password secret)");
    // The two lines that mount a broker in an actix-web app:
    actix_web::HttpServer::new(move || {
        actix_web::App::new().configure(broker_sdk::routes(broker.clone(), credentials.clone()))
    })
    .bind(("127.0.0.1", 8090))?
    .run()
    .await
}
