// Makes s3rver 3.7.1 behave like S3 where bucketfs's tests depend on it. Idempotent; run by
// `npm ci` (postinstall) and by tools/install-deps.sh.
//
// CopyObject with x-amz-metadata-directive REPLACE onto another key copies the data but not
// the stored MD5, so the destination kept the ETag of whatever object was there before:
// S3 gives the copy the source's ETag.
'use strict';
const fs = require('fs');
const path = require('path');

const file = path.join(__dirname, 'node_modules', 's3rver', 'lib', 'stores', 'filesystem.js');
const marker = '/* bucketfs: copy md5 on REPLACE */';
let src = fs.readFileSync(file, 'utf8');
if (!src.includes(marker)) {
  const before = '    if (replacementMetadata) {\n      await this.putMetadata(destBucket, destKey, replacementMetadata);';
  if (!src.includes(before)) {
    console.error(`patch-s3rver: ${file} is not the s3rver 3.7.1 this patch is for`);
    process.exit(1);
  }
  const after = `    if (replacementMetadata) {
      ${marker}
      if (srcObjectPath !== destObjectPath) {
        await fs.copy(
          this.getResourcePath(srcBucket, srcKey, 'object.md5'),
          this.getResourcePath(destBucket, destKey, 'object.md5'),
        );
      }
      await this.putMetadata(destBucket, destKey, replacementMetadata);`;
  src = src.replace(before, after);
  fs.writeFileSync(file, src);
  console.log('patch-s3rver: CopyObject REPLACE now copies the MD5');
}
