"""DocDrop's domain: everything the Lambda handlers do lives here, once, with its collaborators passed in."""
