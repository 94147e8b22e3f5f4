"""Connect: the organisations' allowed redirect origins, connect sessions and their OAuth2
authorization requests (headwater.connect).

The tables as they were when this migration was written, independent of headwater.store.models."""

from peewee import CharField, DateTimeField, ForeignKeyField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Org(Base):
        id = CharField(primary_key=True)

    class ConnectSettings(Base):
        org = ForeignKeyField(Org, primary_key=True, on_delete="CASCADE")
        allowed_redirect_origins = TextField()
        updated_at = DateTimeField()

        class Meta:
            table_name = "connect_settings"

    class ConnectSession(Base):
        id = CharField(primary_key=True)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        token_hash = CharField(unique=True)
        browser_hash = CharField(null=True)
        csrf_token = CharField()
        end_user_id = CharField()
        end_user_email = CharField()
        end_user_display_name = CharField()
        allowed_integrations = TextField()
        integration_properties = TextField()
        redirect_url = TextField()
        project_id = CharField()
        expires_at = DateTimeField(index=True)
        opened_at = DateTimeField(null=True)
        created_at = DateTimeField()

        class Meta:
            table_name = "connect_session"

    class ConnectAttempt(Base):
        state_hash = CharField(primary_key=True)
        session = ForeignKeyField(ConnectSession, on_delete="CASCADE")
        integration = CharField()
        oauth_app_id = CharField()
        code_verifier = TextField()
        redirect_uri = TextField()
        expires_at = DateTimeField()
        used_at = DateTimeField(null=True)
        created_at = DateTimeField()

        class Meta:
            table_name = "connect_attempt"

    db.create_tables([ConnectSettings, ConnectSession, ConnectAttempt])
