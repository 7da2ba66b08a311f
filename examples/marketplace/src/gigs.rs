//! The gigs service: sellers offer gigs, signed-in users browse them. A gig shows its seller's
//! display name, read from the users service through a `mesh::cache` of profiles (in Redis
//! with `MESH_REDIS_URL`) that `user.updated` events keep current; the same events rename the
//! seller on their gigs, and `review.created` adds to a gig's rating.

use std::{sync::Arc, time::Duration};

use mesh::{
    Mesh,
    auth::{Caller, random_token},
    axum::http::StatusCode,
    bus::{Bus, BusError, Event, Subscription, SubscriptionConfig},
    cache::{Cache, Change},
    error::{BoxError, ErrorKind, MeshError},
};
use shop::store::{Store, Table};

use crate::{
    api::{
        Gig, GigForm, Gigs, MAX_PRICE_CENTS, Profile, ReviewCreated, UserUpdated, UsersClient,
        check_id,
    },
    events::follow,
};

/// How long a seller's profile is kept in the cache (events keep it current meanwhile).
const PROFILE_TTL: Duration = Duration::from_secs(10 * 60);

/// The gigs, and the sellers' profiles they show.
#[derive(Clone)]
pub struct GigsService {
    gigs: Arc<Table<Gig>>,
    sellers: Cache<Profile>,
    users: UsersClient,
    bus: Arc<dyn Bus>,
}

impl std::fmt::Debug for GigsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GigsService").finish_non_exhaustive()
    }
}

impl GigsService {
    /// The service on `mesh`, its gigs in `store`, its profile cache's Redis keys under
    /// `namespace`.
    pub async fn new(mesh: &Mesh, store: &Store, namespace: &str) -> Result<Self, MeshError> {
        Ok(Self {
            gigs: Arc::new(store.table("gigs-service", "gigs")),
            sellers: mesh.cache(namespace, "sellers").await?,
            users: UsersClient::new(mesh),
            bus: mesh.bus().await?,
        })
    }

    /// Follows `user.updated` (the seller's name on their gigs, and the profile cache) and
    /// `review.created` (the gig's rating).
    pub async fn follow(&self) -> Result<Vec<Subscription>, BusError> {
        let gigs = self.gigs.clone();
        let changes = follow(
            &self.bus,
            "gigs-service",
            &["user.updated", "review.created"],
            move |event| {
                let gigs = gigs.clone();
                async move { on_event(&gigs, &event).await }
            },
        )
        .await?;
        let cached = self
            .sellers
            .follow(
                self.bus.as_ref(),
                SubscriptionConfig::new("gigs-service", "profiles", ["user.updated"]),
                |event: &Event| {
                    let UserUpdated { profile } = event.data().ok()?;
                    Some(Change::Put(profile.username.clone(), profile, PROFILE_TTL))
                },
            )
            .await?;
        Ok(vec![changes, cached])
    }

    /// The seller's profile: from the cache, or else the users service.
    async fn seller(&self, username: &str) -> Result<Option<Profile>, MeshError> {
        let users = self.users.clone();
        let name = username.to_owned();
        self.sellers
            .get_or_load(username, PROFILE_TTL, || async move {
                match users.profile(name).await {
                    Ok(profile) => Ok(Some(profile)),
                    Err(error) if error.status() == StatusCode::NOT_FOUND => Ok(None),
                    Err(error) => Err(error),
                }
            })
            .await
            .map_err(|error| MeshError::new(ErrorKind::Unavailable, error.to_string()))
    }
}

async fn on_event(gigs: &Table<Gig>, event: &Event) -> Result<(), BoxError> {
    match event.ty.as_str() {
        "user.updated" => {
            let UserUpdated { profile } = event.data()?;
            for gig in gigs.values().await? {
                if gig.seller == profile.username {
                    let name = profile.display_name.clone();
                    gigs.update(&gig.id, move |row| {
                        if let Some(row) = row {
                            row.seller_name = name;
                        }
                    })
                    .await?;
                }
            }
        }
        "review.created" => {
            let ReviewCreated { review } = event.data()?;
            gigs.update(&review.gig_id, move |row| {
                if let Some(row) = row {
                    row.reviews += 1;
                    row.rating_sum += u32::from(review.rating);
                }
            })
            .await?;
        }
        other => return Err(format!("gigs follow no `{other}` events").into()),
    }
    Ok(())
}

impl Gigs for GigsService {
    async fn create(&self, form: GigForm) -> Result<Gig, MeshError> {
        let me = Caller::require()?;
        let title = form.title.trim();
        if title.is_empty()
            || title.chars().count() > 120
            || form.description.len() > 5000
            || !(1..=MAX_PRICE_CENTS).contains(&form.price_cents)
        {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                "a gig needs a title of 1 to 120 characters, a description of at most 5,000 \
                 bytes and a price of one cent to a million",
            ));
        }
        let seller = self.seller(&me.subject).await?.ok_or_else(|| {
            MeshError::new(
                ErrorKind::NotFound,
                "your profile is not made yet: try again in a moment",
            )
        })?;
        let gig = Gig {
            id: random_token(9)?,
            seller: seller.username,
            seller_name: seller.display_name,
            title: title.to_owned(),
            description: form.description,
            price_cents: form.price_cents,
            reviews: 0,
            rating_sum: 0,
        };
        self.gigs.put(&gig.id, gig.clone()).await?;
        Ok(gig)
    }

    async fn list(&self) -> Result<Vec<Gig>, MeshError> {
        self.gigs.values().await
    }

    async fn gig(&self, id: String) -> Result<Gig, MeshError> {
        check_id("gig", &id)?;
        self.gigs
            .get(&id)
            .await?
            .ok_or_else(|| MeshError::new(ErrorKind::NotFound, format!("no gig `{id}`")))
    }
}
