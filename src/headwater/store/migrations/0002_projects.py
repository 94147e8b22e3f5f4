"""Projects: connected-user spaces whose public key verifies user tokens."""

from peewee import CharField, DateTimeField, ForeignKeyField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Org(Base):
        id = CharField(primary_key=True)

    class Project(Base):
        id = CharField(primary_key=True)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        name = CharField()
        signing_public_key = TextField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

    db.create_tables([Project])
