//! The users service: each user's profile, made when `user.signed-up` arrives, changed by its
//! owner (`user.updated` tells the others).

use std::sync::Arc;

use mesh::{
    Mesh,
    auth::{Caller, random_token},
    bus::{Bus, BusError, Event, Subscription},
    error::{BoxError, ErrorKind, MeshError},
};
use shop::store::{Store, Table};

use crate::{
    api::{Profile, ProfileForm, UserSignedUp, UserUpdated, Users},
    events::{follow, publish},
};

/// The profiles.
#[derive(Debug, Clone)]
pub struct UsersService {
    profiles: Arc<Table<Profile>>,
    bus: Arc<dyn Bus>,
}

impl UsersService {
    /// The service on `mesh`, its profiles in `store`.
    pub async fn new(mesh: &Mesh, store: &Store) -> Result<Self, MeshError> {
        Ok(Self {
            profiles: Arc::new(store.table("users-service", "profiles")),
            bus: mesh.bus().await?,
        })
    }

    /// Makes a profile for each new user (`user.signed-up`), once however often it arrives.
    pub async fn follow_signups(&self) -> Result<Subscription, BusError> {
        let profiles = self.profiles.clone();
        follow(
            &self.bus,
            "users-service",
            &["user.signed-up"],
            move |event| {
                let profiles = profiles.clone();
                async move { make_profile(&profiles, &event).await }
            },
        )
        .await
    }
}

async fn make_profile(profiles: &Table<Profile>, event: &Event) -> Result<(), BoxError> {
    let UserSignedUp { username } = event.data()?;
    let profile = Profile {
        display_name: username.clone(),
        username: username.clone(),
        bio: String::new(),
    };
    profiles.insert_new(&username, profile).await?;
    Ok(())
}

impl Users for UsersService {
    async fn profile(&self, username: String) -> Result<Profile, MeshError> {
        self.profiles
            .get(&username)
            .await?
            .ok_or_else(|| MeshError::new(ErrorKind::NotFound, format!("no user `{username}`")))
    }

    async fn update_me(&self, form: ProfileForm) -> Result<Profile, MeshError> {
        let me = Caller::require()?;
        let name = form.display_name.trim();
        if name.is_empty() || name.chars().count() > 64 || form.bio.len() > 1000 {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                "a display name is 1 to 64 characters, a bio at most 1,000 bytes",
            ));
        }
        let profile = Profile {
            username: me.subject.clone(),
            display_name: name.to_owned(),
            bio: form.bio,
        };
        let updated = profile.clone();
        let known = self
            .profiles
            .update(&me.subject, move |row| match row {
                Some(row) => {
                    *row = updated;
                    true
                }
                None => false,
            })
            .await?;
        if !known {
            return Err(MeshError::new(
                ErrorKind::NotFound,
                "your profile is not made yet: try again in a moment",
            ));
        }
        // One event per change.
        let key = format!("{}/{}", profile.username, random_token(8)?);
        let changed = UserUpdated {
            profile: profile.clone(),
        };
        publish(&self.bus, "users-service", &key, &me.subject, &changed).await?;
        Ok(profile)
    }
}
