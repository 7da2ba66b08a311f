//! The reviews service: a buyer reviews a completed order once (the order read from the
//! orders service as the review is made); `review.created` tells the gigs service. Reviews are
//! rows in PostgreSQL with `DATABASE_URL`, as the reference design keeps them.

use std::sync::Arc;

use mesh::{
    Mesh,
    auth::Caller,
    axum::http::StatusCode,
    bus::Bus,
    error::{ErrorKind, MeshError},
};
use shop::store::{Store, Table};

use crate::{
    api::{OrderStatus, OrdersClient, Review, ReviewCreated, ReviewForm, Reviews, check_id},
    events::publish,
};

/// The reviews, by order.
#[derive(Debug, Clone)]
pub struct ReviewsService {
    reviews: Arc<Table<Review>>,
    orders: OrdersClient,
    bus: Arc<dyn Bus>,
}

impl ReviewsService {
    /// The service on `mesh`, its reviews in `store`.
    pub async fn new(mesh: &Mesh, store: &Store) -> Result<Self, MeshError> {
        Ok(Self {
            reviews: Arc::new(store.table("reviews-service", "reviews")),
            orders: OrdersClient::new(mesh),
            bus: mesh.bus().await?,
        })
    }
}

impl Reviews for ReviewsService {
    async fn create(&self, form: ReviewForm) -> Result<Review, MeshError> {
        let me = Caller::require()?;
        if !(1..=5).contains(&form.rating) || form.comment.len() > 2000 {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                "a rating is 1 to 5, a comment at most 2,000 bytes",
            ));
        }
        // Read as the caller: the orders service shows an order to its buyer and seller only.
        check_id("order", &form.order_id)?;
        // The orders service's own answer, a 404 among them, is this call's.
        let order = self.orders.order(form.order_id).await?;
        if order.buyer != me.subject || order.status != OrderStatus::Completed {
            return Err(MeshError::custom(
                StatusCode::CONFLICT,
                "not_reviewable",
                "only the buyer reviews an order, once it is completed",
            ));
        }
        let review = Review {
            order_id: order.id.clone(),
            gig_id: order.gig_id,
            reviewer: me.subject.clone(),
            rating: form.rating,
            comment: form.comment,
        };
        if !self.reviews.insert_new(&order.id, review.clone()).await? {
            return Err(MeshError::custom(
                StatusCode::CONFLICT,
                "already_reviewed",
                "this order is reviewed already",
            ));
        }
        let created = ReviewCreated {
            review: review.clone(),
        };
        publish(
            &self.bus,
            "reviews-service",
            &order.id,
            &me.subject,
            &created,
        )
        .await?;
        Ok(review)
    }

    async fn of_gig(&self, gig_id: String) -> Result<Vec<Review>, MeshError> {
        let mut reviews: Vec<Review> = self
            .reviews
            .values()
            .await?
            .into_iter()
            .filter(|review| review.gig_id == gig_id)
            .collect();
        reviews.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        Ok(reviews)
    }
}
