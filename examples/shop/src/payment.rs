//! The payment service: charges once per idempotency key; an outage switch makes charges
//! fail with `503`, so the order service's circuit breaker can be watched opening.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use mesh::{
    auth::Caller,
    axum::http::StatusCode,
    bus::{Bus, Event},
    error::{ErrorKind, MeshError},
};

use crate::{
    api::{Charge, Outage, Payment, PaymentCompleted, PaymentStats, Payments},
    store::{Store, Table},
};

/// Payments, by idempotency key.
#[derive(Clone)]
pub struct PaymentService {
    payments: Arc<Table<Payment>>,
    outage: Arc<AtomicBool>,
    attempted: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    bus: Arc<dyn Bus>,
}

impl std::fmt::Debug for PaymentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentService").finish_non_exhaustive()
    }
}

impl PaymentService {
    /// The service, its table in `store`, telling `bus` of completed payments.
    pub fn new(store: &Store, bus: Arc<dyn Bus>) -> Self {
        Self {
            payments: Arc::new(store.table("payment-service", "payments")),
            outage: Arc::default(),
            attempted: Arc::default(),
            failed: Arc::default(),
            bus,
        }
    }
}

impl Payments for PaymentService {
    async fn charge(&self, charge: Charge) -> Result<Payment, MeshError> {
        let customer = Caller::require()?.subject.clone();
        self.attempted.fetch_add(1, Ordering::Relaxed);
        if let Some(done) = self.payments.get(&charge.idempotency_key).await? {
            return Ok(done);
        }
        if self.outage.load(Ordering::Relaxed) {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return Err(MeshError::custom(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_down",
                "the payment provider does not answer",
            ));
        }
        if charge.amount_cents == 0 {
            return Err(MeshError::new(ErrorKind::BadRequest, "nothing to charge"));
        }
        let payment = Payment {
            payment_id: format!("pay-{}", charge.idempotency_key),
            order_id: charge.order_id,
            amount_cents: charge.amount_cents,
        };
        if !self
            .payments
            .insert_new(&charge.idempotency_key, payment.clone())
            .await?
        {
            // A concurrent retry won: its payment is the one.
            return self
                .payments
                .get(&charge.idempotency_key)
                .await?
                .ok_or_else(|| MeshError::new(ErrorKind::Internal, "a payment vanished"));
        }
        let completed = PaymentCompleted {
            payment: payment.clone(),
            customer: customer.clone(),
        };
        let event = Event::new("payment-service", &completed)?.with_subject(customer);
        self.bus.publish(event).await?;
        Ok(payment)
    }

    async fn outage(&self, outage: Outage) -> Result<Outage, MeshError> {
        Caller::require_role("admin")?;
        self.outage.store(outage.on, Ordering::Relaxed);
        tracing::warn!(on = outage.on, "payment outage switched");
        Ok(outage)
    }

    async fn stats(&self) -> Result<PaymentStats, MeshError> {
        Caller::require_role("admin")?;
        Ok(PaymentStats {
            attempted: self.attempted.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            completed: self.payments.values().await?.len() as u64,
        })
    }
}
