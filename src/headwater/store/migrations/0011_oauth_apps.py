"""OAuth apps: an organisation's client id and (encrypted) secret per provider, and an index on
the credentials that name one (an app they name cannot be deleted).

The table as it was when this migration was written, independent of headwater.store.models."""

from peewee import CharField, DateTimeField, ForeignKeyField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Org(Base):
        id = CharField(primary_key=True)

    class OAuthApp(Base):
        id = CharField(primary_key=True)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        provider = CharField()
        client_id = CharField()
        client_secret = TextField()
        scopes = TextField()
        authorization_url = TextField()
        token_url = TextField()
        metadata = TextField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            table_name = "oauth_app"
            indexes = ((("org", "provider", "client_id"), False),)

    db.create_tables([OAuthApp])
    migrator.migrate(migrator.add_index("credential", ("oauth_app_id",)))
