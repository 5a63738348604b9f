-- wrk: GET one path, with the Accept header that manifest requests carry.
wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json"
